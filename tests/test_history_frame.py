"""``history_frame`` (pandas, typed columns) and the progress bar, against the fake exchange."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from conftest import FAST

from wsmanager import WSManager
from wsmanager.history.progress import Progress
from wsmanager.testing import FakeExchange, PastSpec

pd = pytest.importorskip("pandas")


@pytest.fixture
def manager() -> Iterator[WSManager]:
    with FakeExchange(history=PastSpec(days=3, trade_interval_ms=60_000), seed=9) as fake:
        options = {"rest_url": fake.rest_url, "archive_url": fake.archive_url, "cache_dir": None}
        with WSManager(url=fake.url, **FAST, **options) as manager:
            yield manager


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def test_trades_frame_has_typed_columns_and_utc_times(manager: WSManager) -> None:
    since, until = _midnight(3), _midnight(1) + timedelta(hours=2)
    rows = manager.history("btcusdt@aggTrade", since, until)
    frame = manager.history_frame("btcusdt@aggTrade", since, until, progress=False)
    assert list(frame.columns) == ["T", "a", "f", "l", "p", "q", "m", "M"]
    assert len(frame) == len(rows) == 2 * 1440 + 120
    assert str(frame["T"].dt.tz) == "UTC"
    assert frame["T"].iloc[0] == pd.Timestamp(rows[0]["T"], unit="ms", tz="UTC")
    assert {str(frame[c].dtype) for c in ("a", "f", "l")} == {"int64"}
    assert {str(frame[c].dtype) for c in ("p", "q")} == {"float64"}
    assert {str(frame[c].dtype) for c in ("m", "M")} == {"bool"}
    assert frame["a"].tolist() == [r["a"] for r in rows]
    assert frame["p"].iloc[5] == float(rows[5]["p"])
    exact = manager.history_frame("btcusdt@aggTrade", since, until, exact=True, progress=False)
    assert exact["p"].dtype == object and exact["p"].iloc[5] == rows[5]["p"]
    micro = manager.history_frame(
        "btcusdt@aggTrade", since, until, time_unit="microsecond", progress=False
    )
    assert (micro["T"] >= frame["T"]).all() and (micro["T"] != frame["T"]).any()


def test_klines_frame(manager: WSManager) -> None:
    frame = manager.history_frame("btcusdt@kline_1h", _midnight(2), _midnight(1), progress=False)
    assert list(frame.columns) == ["t", "T", "o", "h", "l", "c", "v", "n", "q", "V", "Q"]
    assert len(frame) == 24 and str(frame["t"].dt.tz) == "UTC"
    assert frame["t"].iloc[0] == pd.Timestamp(_midnight(2))
    assert (frame["T"] - frame["t"] == pd.Timedelta(milliseconds=3_599_999)).all()
    assert str(frame["o"].dtype) == "float64" and str(frame["n"].dtype) == "int64"
    empty = manager.history_frame("btcusdt@kline_1d", _midnight(0), progress=False)
    assert len(empty) == 0 and list(empty.columns) == list(frame.columns)


def test_a_progress_bar_only_where_a_person_watches(monkeypatch: Any) -> None:
    assert Progress("x", 0, 10_000, None).bar is None  # pytest's stderr is not a terminal
    assert Progress("x", 0, 10_000, False).bar is None
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    bar = Progress("btcusdt@aggTrade", 0, 10_000, True)
    bar(4_000)
    bar(10_000)
    bar.close()
    assert "btcusdt@aggTrade" in out.getvalue() and "10.0/10.0" in out.getvalue()
    with pytest.raises(TypeError):
        Progress("x", 0, 1, "yes")  # type: ignore[arg-type]
