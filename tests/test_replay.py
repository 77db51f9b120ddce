"""Replaying recordings into the fake exchange (FakeExchange.replay): a live recording replayed
at speed 10 into a fresh exchange and manager, timing without drift, gaps, loops, parts, stop,
and errors."""

from __future__ import annotations

import gzip
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import Gap, WSManager
from wsmanager.record import Recorder as StreamRecorder
from wsmanager.recording import (
    Message,
    RecordingError,
    RecordingWriter,
    encode_gap,
    encode_message,
    read,
)
from wsmanager.testing import FakeExchange

TRADE, AGG, DEPTH, TICKER = (
    "btcusdt@trade",
    "ethusdt@aggTrade",
    "btcusdt@depth@100ms",
    "btcusdt@bookTicker",
)


class Arrivals:
    """Messages per stream with their monotonic arrival times, and gaps."""

    def __init__(self, manager: WSManager, streams: list[str]) -> None:
        self.by_stream: dict[str, Recorder] = {s: Recorder() for s in streams}
        self.times: dict[str, list[float]] = {s: [] for s in streams}  # callback thread's own
        self.gaps: list[Gap] = []
        manager.on_gap(self.gaps.append)
        for stream, recorder in self.by_stream.items():
            manager.subscribe(stream, self._callback(recorder, self.times[stream]))

    @staticmethod
    def _callback(recorder: Recorder, times: list[float]) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            times.append(time.monotonic())
            recorder(message)

        return on_message

    def never_early(self, started: float, schedule: dict[str, list[float]]) -> None:
        """Each message arrived no earlier than ``started`` + its scheduled offset (load can
        only delay a message, so this holds on any machine)."""
        for stream, offsets in schedule.items():
            times = self.times[stream]
            assert len(times) == len(offsets)
            early = [
                (i, started + o - t)
                for i, (o, t) in enumerate(zip(offsets, times, strict=True))
                if t < started + o - 0.001
            ]
            assert early == [], f"{stream}: sent before their time: {early[:5]}"

    def wait(self, counts: dict[str, int], timeout: float = 10.0) -> bool:
        return all(self.by_stream[s].wait_messages(n, timeout) for s, n in counts.items())


def trade(n: int) -> dict[str, Any]:
    return {"e": "trade", "s": "BTCUSDT", "t": n, "p": "1.00000000", "q": "1.00000000"}


def synthetic(
    path: Path,
    items: list[tuple[float, str, Any]],
    rotate_bytes: int | None = None,
) -> list[Path]:
    """A recording of ``(t, stream, data)`` (data None: a gap line for the next message)."""
    writer = RecordingWriter(
        path,
        streams=sorted({s for _, s, _ in items}),
        url="",
        clock=lambda: 1e9,
        rotate_bytes=rotate_bytes,
    )
    for t, stream, data in items:
        writer.write(encode_message(1e9 + t, stream, data))
        writer.flush()
    writer.close()
    return writer.parts


def combined_manager(exchange: FakeExchange, **options: Any) -> WSManager:
    return WSManager(url=exchange.url, **{**FAST, "streams_per_connection": 200, **options})


def test_a_live_recording_replays_at_speed_10_in_order_with_its_gap(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl.gz"
    streams = [TRADE, AGG, DEPTH, TICKER]
    # record about 2 s of four streams at 30 msg/s, with a hole of 3 trades in the middle
    with (
        FakeExchange() as source,
        combined_manager(source) as manager,
        StreamRecorder(manager, streams, path, rotate_bytes=4000) as recorder,
    ):
        assert source.wait_for_open(TRADE, 1)
        source.set_rate(30)
        assert wait_for(lambda: recorder.stats().messages >= 120)
        source.skip(TRADE, 3)
        assert wait_for(lambda: recorder.stats().messages >= 240)
        source.set_rate(0)
    recorded = [e for e in read(path) if isinstance(e, Message)]
    assert len(recorder.parts) >= 2 and recorder.stats().gaps == 1
    span = recorded[-1].t - recorded[0].t
    assert span > 1.5
    expected = {s: [e.data for e in recorded if e.stream == s] for s in streams}

    with FakeExchange() as replayer, combined_manager(replayer) as manager:
        arrivals = Arrivals(manager, streams)
        assert replayer.wait_until(lambda: all(replayer.stats(s).open == 1 for s in streams))
        started = time.monotonic()
        replay = replayer.replay(path, speed=10)
        assert replay.wait(10 * SCALE)
        assert arrivals.wait({s: len(v) for s, v in expected.items()})
        for stream in streams:  # every recorded message, in order, nothing else
            assert arrivals.by_stream[stream].messages == expected[stream]
        assert [(g.stream, g.missing, g.after_reconnect) for g in arrivals.gaps] == [
            (TRADE, 3, False)  # the recording's own gap, and no other
        ]
        # timing scaled by 10: nothing before its time, and all of it within span / 10 + slack
        t0 = recorded[0].t
        arrivals.never_early(
            started, {s: [(e.t - t0) / 10 for e in recorded if e.stream == s] for s in streams}
        )
        last = max(times[-1] for times in arrivals.times.values())
        assert last - started < span / 10 + 0.25 * SCALE, (last - started, span / 10)
        progress = replay.progress()
        assert progress.finished and progress.loops == 1
        assert (progress.messages, progress.reached, progress.gaps) == (
            len(recorded),
            len(recorded),
            1,
        )


def test_timing_is_scheduled_from_the_start_so_it_does_not_drift(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    # 2000 messages 0.5 ms apart (1 s): sleeping each interval would drift by far more than 80 ms
    path = tmp_path / "dense.jsonl.gz"
    synthetic(path, [(i * 0.0005, TRADE, trade(i + 1)) for i in range(2000)])
    manager = make_manager()
    arrivals = Arrivals(manager, [TRADE])
    assert exchange.wait_for_open(TRADE, 1)
    started = time.monotonic()
    replay = exchange.replay(path, speed=1.0)
    assert replay.wait(10 * SCALE)
    took = time.monotonic() - started
    assert arrivals.wait({TRADE: 2000})
    assert [m["t"] for m in arrivals.by_stream[TRADE].messages] == list(range(1, 2001))
    arrivals.never_early(started, {TRADE: [i * 0.0005 for i in range(2000)]})
    assert took < 1.0 + 0.25 * SCALE, took  # sleeping 0.5 ms 2000 times takes about 1.6 s
    assert replay.progress().max_lateness < 0.25 * SCALE


def test_a_recorded_gap_is_reported_by_the_manager(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    path = tmp_path / "gap.jsonl.gz"
    numbers = [*range(1, 11), *range(14, 21)]  # 11..13 never arrived at the recorder
    writer = RecordingWriter(path, streams=[TRADE], url="", clock=lambda: 0.0)
    for i, n in enumerate(numbers):
        if n == 14:
            writer.write(encode_gap(i * 0.001, Gap(TRADE, 11, 14, False)))
        writer.write(encode_message(i * 0.001, TRADE, trade(n)))
    writer.close()
    manager = make_manager()
    arrivals = Arrivals(manager, [TRADE])
    assert exchange.wait_for_open(TRADE, 1)
    replay = exchange.replay(path, speed=1.0)
    assert replay.wait(5 * SCALE)
    assert arrivals.wait({TRADE: len(numbers)})
    assert [m["t"] for m in arrivals.by_stream[TRADE].messages] == numbers
    assert [(g.expected, g.received) for g in arrivals.gaps] == [(11, 14)]
    assert replay.progress().gaps == 1


def test_a_looped_replay_continues_every_sequence(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    # record real payloads of four sequenced kinds, then loop them
    path = tmp_path / "loop.jsonl.gz"
    streams = [TRADE, AGG, DEPTH, TICKER]
    manager = make_manager(streams_per_connection=200)
    with StreamRecorder(manager, streams, path) as recorder:
        assert exchange.wait_until(lambda: all(exchange.stats(s).open == 1 for s in streams))
        for _ in range(10):
            for stream in streams:
                exchange.publish(stream)
        assert wait_for(lambda: recorder.stats().messages >= 40)
    manager.destroy()
    with FakeExchange() as replayer, combined_manager(replayer) as looped:
        arrivals = Arrivals(looped, streams)
        assert replayer.wait_until(lambda: all(replayer.stats(s).open == 1 for s in streams))
        with replayer.replay(path, speed=math.inf, loop=True) as replay:
            assert arrivals.wait({s: 35 for s in streams})
        assert replay.progress().loops >= 3
        assert arrivals.gaps == []  # each pass continues the last: no gap, no duplicate
        trades = [m["t"] for m in arrivals.by_stream[TRADE].messages]
        assert trades == list(range(1, len(trades) + 1))
        aggs = arrivals.by_stream[AGG].messages
        assert all(b["f"] == a["l"] + 1 for a, b in itertools.pairwise(aggs))
        depth = arrivals.by_stream[DEPTH].messages
        assert all(b["U"] == a["u"] + 1 for a, b in itertools.pairwise(depth))
        tickers = [m["u"] for m in arrivals.by_stream[TICKER].messages]
        assert tickers == sorted(set(tickers))


def test_rotated_parts_replay_in_order(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    path = tmp_path / "parts.jsonl.gz"
    parts = synthetic(path, [(i * 0.001, TRADE, trade(i)) for i in range(1, 301)], 1500)
    assert len(parts) >= 3
    manager = make_manager()
    arrivals = Arrivals(manager, [TRADE])
    assert exchange.wait_for_open(TRADE, 1)
    assert exchange.replay(path, speed=1.0).wait(5 * SCALE)
    assert arrivals.wait({TRADE: 300})
    assert [m["t"] for m in arrivals.by_stream[TRADE].messages] == list(range(1, 301))
    exchange.repeat(TRADE)  # the exchange knows the last replayed message
    assert arrivals.by_stream[TRADE].wait_messages(300)
    assert wait_for(lambda: manager.get_stream_info()[0].messages_received == 301)


def test_stop_and_close_end_a_replay_promptly(exchange: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl.gz"
    synthetic(path, [(0.0, TRADE, trade(1)), (3600.0, TRADE, trade(2))])
    replay = exchange.replay(path, speed=1.0)
    assert wait_for(lambda: replay.progress().messages == 1)
    started = time.monotonic()
    replay.stop()
    assert time.monotonic() - started < 1.0 * SCALE
    assert replay.wait(0) and replay.done and replay.progress().finished
    assert replay.progress().loops == 0  # stopped before its end
    with FakeExchange() as other:
        running = other.replay(path, speed=1.0)
    assert running.done  # closing the exchange stopped it (and its thread: see the fixture)


def test_bad_replays_are_refused_or_reported(exchange: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "ok.jsonl.gz"
    synthetic(path, [(0.0, TRADE, trade(1))])
    for speed in (0, -1, "fast", True):
        with pytest.raises(ValueError, match="speed must be a number > 0"):
            exchange.replay(path, speed=speed)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError, match="no recording at"):
        exchange.replay(tmp_path / "missing.jsonl.gz")
    with pytest.raises(RuntimeError, match="start the exchange"):
        FakeExchange().replay(path)
    corrupt = tmp_path / "corrupt.jsonl.gz"
    corrupt.write_bytes(gzip.compress(b'{"t":1,"stream":"btcusdt@trade","data":{}}\n{"t":\n'))
    replay = exchange.replay(corrupt, speed=math.inf)
    with pytest.raises(RecordingError, match=r"corrupt\.jsonl\.gz:2"):
        replay.wait(5 * SCALE)
    assert replay.progress().finished and replay.progress().messages == 1  # the line before
