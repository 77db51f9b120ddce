"""``wsmanager history`` and ``wsmanager stream --since`` as processes, against the fake
exchange's past; a history recording replayed by the fake exchange."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import FAST, Recorder

from wsmanager import WSManager
from wsmanager.recording import Message, read
from wsmanager.testing import FakeExchange, PastSpec

WSMANAGER = [sys.executable, "-m", "wsmanager"]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WSMANAGER + args, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def market() -> Iterator[FakeExchange]:
    with FakeExchange(history=PastSpec(days=3, trade_interval_ms=60_000), seed=3) as fake:
        yield fake


def _sources(market: FakeExchange) -> list[str]:
    return ["--rest-url", market.rest_url, "--archive-url", market.archive_url, "--no-cache"]


def test_history_writes_a_recording_the_fake_exchange_replays(
    market: FakeExchange, tmp_path: Path
) -> None:
    today = datetime.now(timezone.utc).date()
    since, until = (today - timedelta(days=3)).isoformat(), (today - timedelta(days=1)).isoformat()
    path = tmp_path / "trades.jsonl.gz"
    stream = "btcusdt@aggTrade"
    result = _run(
        ["history", stream, "--since", since, "--until", until, "-o", str(path), *_sources(market)]
    )
    assert result.returncode == 0, result.stderr
    assert f"2880 message(s) of {stream} in {path}" in result.stderr
    recorded = [e for e in read(path) if isinstance(e, Message)]
    ids = [m.data["a"] for m in recorded]
    assert ids == list(range(ids[0], ids[0] + 2880)) and {m.stream for m in recorded} == {stream}
    assert all(m.t == m.data["T"] / 1000 for m in recorded)
    with FakeExchange() as player:
        recorder = Recorder()
        with WSManager(url=player.url, **FAST) as manager:
            manager.subscribe(stream, recorder)
            assert player.wait_for_open(stream)
            player.replay(path, speed=math.inf).wait(30)
            assert recorder.wait_messages(2880, timeout=30)
        assert [m["a"] for m in recorder.messages] == ids
    again = _run(["history", stream, "--since", since, "-o", str(path), *_sources(market)])
    assert again.returncode == 2 and "exists" in again.stderr


def test_history_prints_json_lines_and_refuses_bad_input(market: FakeExchange) -> None:
    result = _run(["history", "btcusdt@kline_1h", "--since", "5h", *_sources(market)])
    assert result.returncode == 0, result.stderr
    candles = [json.loads(line)["k"] for line in result.stdout.splitlines()]
    assert len(candles) in (4, 5) and all(k["x"] for k in candles)
    bad = _run(["history", "btcusdt@depth", "--since", "1h", *_sources(market)])
    assert bad.returncode == 2 and "has no history" in bad.stderr
    bad = _run(["history", "btcusdt@aggTrade", "--since", "yesterday"])
    assert bad.returncode == 2 and "--since" in bad.stderr
    future = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    bad = _run(["history", "btcusdt@aggTrade", "--since", future, *_sources(market)])
    assert bad.returncode == 2 and "future" in bad.stderr


def test_stream_since_prints_history_then_live(market: FakeExchange) -> None:
    market.set_rate(20)
    result = _run(
        [
            "stream",
            "btcusdt@kline_1m",
            "--since",
            "30m",
            "--count",
            "40",
            "--url",
            market.url,
            *_sources(market),
        ]
    )
    assert result.returncode == 0, result.stderr
    candles = [json.loads(line)["k"] for line in result.stdout.splitlines()]
    assert len(candles) == 40
    first_live = next(i for i, k in enumerate(candles) if not k["x"])
    history = [k["t"] for k in candles[:first_live]]
    closed = [k["t"] for k in candles if k["x"]]
    assert len(history) >= 29 and history == list(
        range(history[0], history[0] + 60_000 * len(history), 60_000)
    )
    assert len(set(closed)) == len(closed)  # one closed candle per open time
    assert all(k["t"] > history[-1] for k in candles[len(history) :])  # then live
