"""History, then live (issue 22), end to end against the fake exchange's past: its public
archive and REST history on loopback, and its live streams."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder

from wsmanager import WSManager
from wsmanager.history import ArchiveFileError, HistoryError, HistoryOverflowError
from wsmanager.testing import FakeExchange, PastSpec
from wsmanager.testing.past import SyntheticPast

DAY = timedelta(days=1)
MINUTE_TRADES = PastSpec(days=4, trade_interval_ms=60_000)  # one aggregate trade a minute


def _midnight(days_ago: int) -> datetime:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - days_ago * DAY


@pytest.fixture
def market() -> Iterator[FakeExchange]:
    with FakeExchange(history=MINUTE_TRADES, seed=11) as fake:
        yield fake


@pytest.fixture
def make(market: FakeExchange, tmp_path: Path) -> Iterator[Any]:
    managers: list[WSManager] = []

    def make(**options: Any) -> WSManager:
        settings = {
            **FAST,
            "rest_url": market.rest_url,
            "archive_url": market.archive_url,
            "cache_dir": tmp_path / "cache",
            **options,
        }
        manager = WSManager(url=market.url, **settings)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.destroy()


def _past(market: FakeExchange) -> SyntheticPast:
    assert market.archive is not None
    return market.archive.pasts.of("BTCUSDT")


def _archive_zips(market: FakeExchange) -> list[str]:
    assert market.archive is not None
    return [p for p in market.archive.requests() if p.endswith(".zip")]


def _last_id(recorder: Recorder) -> int:
    return int(recorder.messages[-1]["a"]) if recorder.messages else -1


def _rest(market: FakeExchange, path: str) -> list[Any]:
    return [r for r in market.rest_requests() if r.path == path]


def test_aggtrades_from_archive_then_rest_then_live_with_contiguous_ids(
    market: FakeExchange, make: Any
) -> None:
    past = _past(market)
    since = _midnight(4)
    recorder = Recorder()
    make().subscribe("btcusdt@aggTrade", recorder, recorder.on_error, since=since)
    assert market.wait_for_open("btcusdt@aggTrade")
    for _ in range(3):  # held while the history loads, or just after it
        market.publish("btcusdt@aggTrade")
    assert recorder.wait_messages(past.live_from + 3, timeout=30)
    for _ in range(2):
        market.publish("btcusdt@aggTrade")
    assert recorder.wait_messages(past.live_from + 5)
    ids = [m["a"] for m in recorder.messages]
    assert ids == list(range(past.live_from + 5))  # archive, REST, live: every id once
    assert recorder.errors == []
    first = recorder.messages[0]
    assert set(first) == {"e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}
    assert first["E"] == first["T"] and first["T"] >= since.timestamp() * 1000
    assert [m["T"] for m in recorder.messages] == sorted(m["T"] for m in recorder.messages)
    days = [p.rsplit("-", 3)[1:] for p in _archive_zips(market)]
    assert len(days) == 3  # the three published days; yesterday and today from REST
    assert _rest(market, "/api/v3/aggTrades")


def test_klines_one_closed_candle_per_open_time_then_live_updates(
    market: FakeExchange, make: Any
) -> None:
    recorder = Recorder()
    make().subscribe("btcusdt@kline_1m", recorder, recorder.on_error, since=_midnight(2))
    assert market.wait_for_open("btcusdt@kline_1m")
    now = datetime.now(timezone.utc)
    closed = 2 * 1440 + (now.hour * 60 + now.minute)  # candles closed by now
    market.publish("btcusdt@kline_1m")
    assert recorder.wait_messages(closed, timeout=30)
    market.publish("btcusdt@kline_1m")
    assert recorder.wait(lambda r: not r.messages[-1]["k"]["x"], 10)
    assert recorder.errors == []
    candles = [m["k"] for m in recorder.messages]
    history = [k for k in candles if k["x"]]
    opens = [k["t"] for k in history]
    assert Counter(opens).most_common(1)[0][1] == 1  # one closed candle per open time
    assert opens == list(range(opens[0], opens[0] + 60_000 * len(opens), 60_000))
    assert opens[0] == _midnight(2).timestamp() * 1000
    live = candles[len(history) :]
    assert live and all(not k["x"] and k["t"] > opens[-1] for k in live)
    assert {"f", "L"}.isdisjoint(history[0]) and history[0]["T"] == history[0]["t"] + 59_999
    assert recorder.messages[0]["E"] == history[0]["T"]
    assert len(_archive_zips(market)) == 1  # the day before yesterday; the rest from REST


def test_history_list_until_and_the_same_candles_from_both_sources(
    market: FakeExchange, make: Any
) -> None:
    manager = make()
    since, until = _midnight(2) + timedelta(hours=23), _midnight(1) + timedelta(hours=1)
    rows = manager.history("btcusdt@kline_1h", since=since, until=until, progress=False)
    assert [m["k"]["t"] for m in rows] == [
        int((since + timedelta(hours=h)).timestamp() * 1000) for h in range(2)
    ]  # 23:00 from the archive, 00:00 from REST; 01:00 is not closed by until
    without_archive = make(archive_url=None).history(
        "btcusdt@kline_1h", since=since, until=until, progress=False
    )
    assert without_archive == rows
    assert manager.history("btcusdt@aggTrade", since=since, until=since + timedelta(minutes=5))


def test_a_corrupted_archive_file_is_fetched_from_rest_instead(
    market: FakeExchange, make: Any, tmp_path: Path
) -> None:
    assert market.archive is not None
    day = _midnight(3)
    name = f"BTCUSDT-aggTrades-{day:%Y-%m-%d}.zip"
    market.archive.corrupt(name)
    rows = make().history("btcusdt@aggTrade", since=_midnight(4), until=_midnight(2))
    ids = [m["a"] for m in rows]
    assert ids == list(range(ids[0], ids[0] + 2 * 1440)) and len(ids) == 2880
    day_ms = day.timestamp() * 1000
    assert any(day_ms <= m["T"] < day_ms + 86_400_000 for m in rows)
    assert _rest(market, "/api/v3/aggTrades")  # that day came from REST
    assert not list((tmp_path / "cache").rglob(name))  # and the bad file was not cached


def test_a_corrupted_file_is_named_when_rest_fails_too(market: FakeExchange, make: Any) -> None:
    assert market.archive is not None
    name = f"BTCUSDT-aggTrades-{_midnight(3):%Y-%m-%d}.zip"
    market.archive.corrupt(name)
    market.rest_errors(500, count=None)
    with pytest.raises(ArchiveFileError, match=f"{name}: SHA-256 .* REST instead failed") as info:
        make().history("btcusdt@aggTrade", since=_midnight(3), until=_midnight(2))
    assert info.value.file == name and "unreachable" in str(info.value)


def test_microsecond_archives_in_milliseconds_unless_asked() -> None:
    spec = PastSpec(start=datetime(2024, 12, 30, tzinfo=timezone.utc), trade_interval_ms=60_000)
    with FakeExchange(history=spec, seed=5) as fake:
        manager = WSManager(
            url=fake.url,
            rest_url=fake.rest_url,
            archive_url=fake.archive_url,
            cache_dir=None,
            **FAST,
        )
        try:
            since = datetime(2024, 12, 31, tzinfo=timezone.utc)
            until = datetime(2025, 1, 2, tzinfo=timezone.utc)
            ms = manager.history("btcusdt@aggTrade", since, until)
            us = manager.history("btcusdt@aggTrade", since, until, time_unit="microsecond")
            candles = manager.history("btcusdt@kline_1m", since, until)
            candles_us = manager.history("btcusdt@kline_1m", since, until, time_unit="microsecond")
        finally:
            manager.destroy()
    assert len(ms) == len(us) == 2880 and [m["a"] for m in ms] == [m["a"] for m in us]
    assert all(1_735_603_200_000 <= m["T"] < 1_735_776_000_000 for m in ms)  # ms, both days
    assert all(m["T"] == u["T"] // 1000 for m, u in zip(ms, us, strict=True))
    assert any(u["T"] % 1000 for u in us[1440:])  # 2025: the archive's own microseconds
    assert not any(u["T"] % 1000 for u in us[:1440])  # 2024: milliseconds, scaled
    assert [c["k"]["t"] * 1000 for c in candles] == [c["k"]["t"] for c in candles_us]
    assert candles[-1]["k"]["T"] == 1_735_775_999_999
    assert candles_us[-1]["k"]["T"] == 1_735_775_999_999_999


def test_a_429_during_the_load_is_waited_out(market: FakeExchange, make: Any) -> None:
    market.rest_throttle(429, retry_after=1, count=1)
    started = time.monotonic()
    rows = make().history("btcusdt@aggTrade", since=_midnight(1), until=_midnight(0))
    assert len(rows) == 1440
    statuses = [r.status for r in _rest(market, "/api/v3/aggTrades")]
    assert statuses[0] == 429 and statuses[1:] == [200] * (len(statuses) - 1)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1


def test_the_cache_serves_a_second_load_without_archive_requests(
    market: FakeExchange, make: Any
) -> None:
    assert market.archive is not None
    manager = make()
    first = manager.history("btcusdt@kline_5m", since=_midnight(4), until=_midnight(2))
    requests = len(market.archive.requests())
    assert requests == 4  # two days, a zip and its checksum each
    second = make().history("btcusdt@kline_5m", since=_midnight(4), until=_midnight(2))
    assert second == first and len(market.archive.requests()) == requests
    make(cache_dir=None).history("btcusdt@kline_5m", since=_midnight(4), until=_midnight(3))
    assert len(market.archive.requests()) == requests + 2


@pytest.mark.parametrize(
    ("stream", "since", "match"),
    [
        ("btcusdt@aggTrade", datetime.now(timezone.utc) + DAY, "future"),
        ("btcusdt@aggTrade", datetime(2026, 11, 1), "naive"),
        ("btcusdt@depth", timedelta(hours=1), "no history"),
        ("btcusdt@kline_7m", timedelta(hours=1), "no history"),
        ("btcusdt@aggTrade", timedelta(hours=-1), "positive"),
        ("btcusdt@aggTrade", -5, "epoch milliseconds"),
    ],
)
def test_bad_since_values(make: Any, stream: str, since: Any, match: str) -> None:
    manager = make()
    with pytest.raises(ValueError, match=match):
        manager.history(stream, since=since)
    with pytest.raises(ValueError, match=match):
        manager.subscribe(stream, print, since=since)
    assert manager.get_active_streams_count() == 0


def test_since_of_the_wrong_type_and_until_before_since(make: Any) -> None:
    manager = make()
    with pytest.raises(TypeError, match="aware datetime"):
        manager.history("btcusdt@aggTrade", since="6h")
    with pytest.raises(ValueError, match="before until"):
        manager.history("btcusdt@aggTrade", since=_midnight(1), until=_midnight(2))
    with pytest.raises(ValueError, match="time_unit"):
        manager.history("btcusdt@aggTrade", since=_midnight(1), time_unit="ns")


def test_a_live_burst_during_a_long_history_load_is_held_and_nothing_lost(
    market: FakeExchange, make: Any
) -> None:
    past = _past(market)
    market.rest_delay(2 * SCALE)  # the first REST page is slow: the burst comes during the load
    recorder = Recorder()
    manager = make(archive_url=None)
    manager.subscribe("btcusdt@aggTrade", recorder, recorder.on_error, since=_midnight(2))
    assert market.wait_for_open("btcusdt@aggTrade")
    for _ in range(200):
        market.publish("btcusdt@aggTrade")
    market.rest_normal()  # the pages after the first are quick
    assert not recorder.messages or recorder.messages[-1]["a"] < past.live_from  # still loading
    assert recorder.wait(lambda r: _last_id(r) >= past.live_from + 199, 30)
    ids = [m["a"] for m in recorder.messages]
    assert ids == list(range(ids[0], past.live_from + 200))
    assert recorder.errors == []


def test_an_overflowing_hold_is_reported_and_trades_are_fetched_again(
    market: FakeExchange, make: Any
) -> None:
    past = _past(market)
    market.rest_delay(2 * SCALE)  # the first REST page is slow: the burst comes during the load
    recorder = Recorder()
    manager = make(archive_url=None, max_buffered_messages=20)
    manager.subscribe("btcusdt@aggTrade", recorder, recorder.on_error, since=_midnight(1))
    assert market.wait_for_open("btcusdt@aggTrade")
    for _ in range(60):
        market.publish("btcusdt@aggTrade")
    market.rest_normal()
    assert recorder.wait(lambda r: _last_id(r) >= past.live_from + 59, 30)
    ids = [m["a"] for m in recorder.messages]
    assert ids == list(range(ids[0], past.live_from + 60))  # the dropped 40 came from REST
    assert len(recorder.errors) == 1 and isinstance(recorder.errors[0], HistoryOverflowError)
    assert recorder.errors[0].dropped == 40


def test_an_unreachable_source_goes_to_on_error_and_live_goes_on(
    market: FakeExchange, make: Any
) -> None:
    market.rest_errors(503, count=None)
    recorder = Recorder()
    manager = make(archive_url=None)
    manager.subscribe("btcusdt@aggTrade", recorder, recorder.on_error, since=timedelta(hours=1))
    assert recorder.wait(lambda r: bool(r.errors), 20)
    assert isinstance(recorder.errors[0], HistoryError) and "unreachable" in str(recorder.errors[0])
    assert market.wait_for_open("btcusdt@aggTrade")
    market.publish("btcusdt@aggTrade")
    assert recorder.wait_messages(1)
    with pytest.raises(HistoryError, match="unreachable"):
        manager.history("btcusdt@aggTrade", since=timedelta(hours=1))


def test_unsubscribe_and_destroy_end_the_history_thread(market: FakeExchange, make: Any) -> None:
    market.rest_delay(0.2 * SCALE)
    manager = make(archive_url=None)
    unsubscribe = manager.subscribe("btcusdt@aggTrade", print, since=_midnight(2))
    manager.subscribe("btcusdt@kline_1m", print, since=_midnight(2))
    unsubscribe()
    unsubscribe()  # idempotent
    manager.destroy()  # ends the other one; the thread-leak guard checks both


def test_trades_made_before_the_live_connection_opens_are_bridged(
    market: FakeExchange, make: Any
) -> None:
    past = _past(market)
    market.hang_handshakes()  # the live connection opens late
    recorder = Recorder()
    manager = make(archive_url=None)
    manager.subscribe("btcusdt@aggTrade", recorder, recorder.on_error, since=timedelta(seconds=1))
    assert market.wait_until(  # history found no trade since then, and where the market is
        lambda: any(r.params.get("limit") == "1" for r in _rest(market, "/api/v3/aggTrades"))
    )
    for _ in range(3):  # trades nobody receives live
        market.publish("btcusdt@aggTrade")
    market.accept_normally()
    assert market.wait_for_open("btcusdt@aggTrade", timeout=10)
    for _ in range(2):
        market.publish("btcusdt@aggTrade")
    assert recorder.wait(lambda r: _last_id(r) >= past.live_from + 4, 10)
    assert [m["a"] for m in recorder.messages] == list(range(past.live_from, past.live_from + 5))
    assert recorder.errors == []


def test_a_microsecond_manager_gets_history_and_live_in_microseconds(
    market: FakeExchange, make: Any
) -> None:
    past = _past(market)
    manager = make(time_unit="microsecond")  # the live stream in µs (timeUnit=MICROSECOND)
    trades, candles = Recorder(), Recorder()
    manager.subscribe("btcusdt@aggTrade", trades, trades.on_error, since=_midnight(1))
    manager.subscribe("btcusdt@kline_1h", candles, candles.on_error, since=_midnight(1))
    assert market.wait_for_open("btcusdt@aggTrade") and market.wait_for_open("btcusdt@kline_1h")
    first = past.first_id_at(int(_midnight(1).timestamp()) * 10**6)
    assert trades.wait_messages(past.live_from - first)
    market.publish("btcusdt@aggTrade")
    market.publish("btcusdt@kline_1h")
    assert trades.wait(lambda r: _last_id(r) == past.live_from, 10)
    assert candles.wait(lambda r: bool(r.messages) and not r.messages[-1]["k"]["x"], 10)
    now_us = time.time() * 1e6
    assert all(_midnight(1).timestamp() * 1e6 <= m["T"] <= now_us for m in trades.messages)
    ids = [m["a"] for m in trades.messages]
    assert ids == list(range(ids[0], past.live_from + 1))
    opens = [m["k"]["t"] for m in candles.messages]
    assert opens[0] == _midnight(1).timestamp() * 1e6 and opens == sorted(opens)
    assert len(set(opens)) == len(opens) and trades.errors == candles.errors == []
