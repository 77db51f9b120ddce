"""Recording live streams of the fake exchange with wsmanager.record.Recorder: what the lines
hold and in which order, rotation, gaps, drops, limits, endings, and bad input."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SCALE, Recorder, wait_for

from wsmanager import ManagerClosedError, WSManager
from wsmanager.record import Recorder as StreamRecorder
from wsmanager.recording import Dropped, Ended, GapEntry, Header, Message, read
from wsmanager.testing import FakeExchange

TRADE, AGG, DEPTH = "btcusdt@trade", "ethusdt@aggTrade", "btcusdt@depth@100ms"


def entries(path: Path) -> list[Any]:
    reader = read(path)
    found = list(reader)
    assert reader.truncated_parts == []
    return found


def messages_of(found: list[Any], stream: str) -> list[Any]:
    return [e.data for e in found if isinstance(e, Message) and e.stream == stream]


def test_records_each_message_as_subscribers_get_it_in_order(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager(streams_per_connection=200)  # combined streams, the default
    seen = {stream: Recorder() for stream in (TRADE, AGG, DEPTH)}
    for stream, recorder in seen.items():
        manager.subscribe(stream, recorder)
    path = tmp_path / "r.jsonl.gz"
    with StreamRecorder(manager, [TRADE, AGG, DEPTH], path) as recorder:
        assert exchange.wait_until(lambda: all(exchange.stats(s).open == 1 for s in seen))
        for _ in range(30):
            for stream in seen:
                exchange.publish(stream)
        assert all(r.wait_messages(30) for r in seen.values())
        assert wait_for(lambda: recorder.stats().messages == 90)
    found = entries(path)
    assert isinstance(found[0], Header) and found[0].streams == (TRADE, AGG, DEPTH)
    assert found[0].url == exchange.url
    for stream, subscriber in seen.items():
        assert messages_of(found, stream) == subscriber.messages  # the same values, same order
    assert [m["t"] for m in messages_of(found, TRADE)] == list(range(1, 31))
    times = [e.t for e in found]
    assert times == sorted(times)  # receive times never go back
    # each line is {"t", "stream", "data"} with "data" the payload (not the combined envelope)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    first = json.loads(lines[1])
    assert set(first) == {"t", "stream", "data"}
    assert first["data"]["e"] in ("trade", "aggTrade", "depthUpdate")
    assert abs(first["t"] - found[0].t) < 10 * SCALE
    stats = recorder.stats()
    assert (stats.messages, stats.gaps, stats.dropped, stats.pending) == (90, 0, 0, 0)
    assert stats.parts == (path,)
    assert stats.bytes_written == path.stat().st_size


def test_rotates_by_size_and_the_parts_read_back_in_order(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    path = tmp_path / "day.jsonl.gz"
    with StreamRecorder(manager, [TRADE], path, rotate_bytes=3000) as recorder:
        # hold the writer in its first write while the rest queue: one batch of 599 lines
        release, stalled = threading.Event(), threading.Event()
        write = recorder._writer.write

        def slow_write(text: str) -> None:
            stalled.set()
            release.wait(10 * SCALE)
            write(text)

        recorder._writer.write = slow_write  # type: ignore[method-assign]
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        assert stalled.wait(5 * SCALE)
        for _ in range(599):
            exchange.publish(TRADE)
        assert wait_for(lambda: recorder.stats().pending == 599)
        release.set()
        assert wait_for(lambda: recorder.stats().messages == 600)
    parts = recorder.parts
    assert len(parts) >= 3
    assert parts[:3] == [path, tmp_path / "day.1.jsonl.gz", tmp_path / "day.2.jsonl.gz"]
    for part in parts:
        gzip.decompress(part.read_bytes())  # every part is a complete gzip file
        assert part.stat().st_size < 3000 + 2000
    assert [m["t"] for m in messages_of(entries(path), TRADE)] == list(range(1, 601))


def test_a_gap_is_recorded_before_the_message_that_revealed_it(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    path = tmp_path / "gap.jsonl.gz"
    with StreamRecorder(manager, [TRADE], path) as recorder:
        assert exchange.wait_for_open(TRADE, 1)
        for _ in range(3):
            exchange.publish(TRADE)
        exchange.skip(TRADE, 4)
        exchange.publish(TRADE)
        assert wait_for(lambda: recorder.stats().messages == 4)
    kinds = [(type(e).__name__, getattr(e, "data", {}).get("t")) for e in entries(path)[1:]]
    assert kinds == [
        ("Message", 1),
        ("Message", 2),
        ("Message", 3),
        ("GapEntry", None),
        ("Message", 8),
    ]
    gap = next(e.gap for e in entries(path) if isinstance(e, GapEntry))
    assert (gap.stream, gap.expected, gap.received, gap.after_reconnect) == (TRADE, 4, 8, False)
    assert recorder.stats().gaps == 1


def test_a_full_queue_drops_and_the_recording_says_so(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    path = tmp_path / "slow.jsonl.gz"
    recorder = StreamRecorder(manager, [TRADE], path, max_pending=5)
    # a disk that stalls: the writer thread blocks in its first write until released
    release, stalled = threading.Event(), threading.Event()
    write = recorder._writer.write

    def slow_write(text: str) -> None:
        stalled.set()
        release.wait(10 * SCALE)
        write(text)

    recorder._writer.write = slow_write  # type: ignore[method-assign]
    try:
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        assert stalled.wait(5 * SCALE)  # message 1 is being written
        for _ in range(20):
            exchange.publish(TRADE)  # 2..21: five queued, fifteen dropped
        assert wait_for(lambda: recorder.stats().dropped == 15)
        assert recorder.stats().pending == 5
    finally:
        release.set()
        recorder.close()
    found = entries(path)
    assert [m["t"] for m in messages_of(found, TRADE)] == [1, 2, 3, 4, 5, 6]
    assert [(e.stream, e.count) for e in found if isinstance(e, Dropped)] == [(TRADE, 15)]
    assert recorder.stats().dropped == 15


def test_max_messages_then_wait_returns(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    path = tmp_path / "n.jsonl.gz"
    with StreamRecorder(manager, [TRADE, "ethusdt@trade"], path, max_messages=7) as recorder:
        assert not recorder.wait(0.05)
        exchange.set_rate(100)
        assert recorder.wait(5 * SCALE)
        exchange.set_rate(0)
    assert sum(isinstance(e, Message) for e in entries(path)) == 7


def test_a_stream_that_ends_is_recorded_as_ended(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    exchange.refuse_stream("nosuch@trade", code=2, msg="Invalid request: no such stream")
    manager = make_manager(streams_per_connection=200)
    path = tmp_path / "e.jsonl.gz"
    with StreamRecorder(manager, [TRADE, "nosuch@trade"], path) as recorder:
        assert wait_for(lambda: "nosuch@trade" in recorder.ended)
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        assert wait_for(lambda: recorder.stats().messages == 1)
    ended = [e for e in entries(path) if isinstance(e, Ended)]
    assert [e.stream for e in ended] == ["nosuch@trade"]
    assert ended[0].reason.startswith("StreamRejectedError") and "no such stream" in ended[0].reason
    # the manager destroyed under a running recorder: its streams complete
    manager2 = make_manager()
    path2 = tmp_path / "e2.jsonl.gz"
    with StreamRecorder(manager2, [TRADE], path2) as recorder2:
        manager2.destroy()
        assert wait_for(lambda: recorder2.ended == {TRADE: "completed"})
    assert [(e.stream, e.reason) for e in entries(path2) if isinstance(e, Ended)] == [
        (TRADE, "completed")
    ]


def test_close_is_idempotent_and_ends_the_writer_from_a_callback(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    recorder = StreamRecorder(manager, [TRADE], tmp_path / "c.jsonl.gz")
    closed = threading.Event()

    def close_from_callback(message: Any) -> None:
        recorder.close()  # on a manager thread: must not deadlock
        closed.set()

    manager.subscribe(TRADE, close_from_callback)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert closed.wait(5 * SCALE)
    recorder.close()
    recorder.close()
    assert recorder.error is None


def test_bad_input_is_refused_before_anything_starts(
    make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    path = tmp_path / "b.jsonl.gz"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"streams": []}, "at least one stream"),
        ({"streams": ["bad name"]}, "whitespace"),
        ({"path": tmp_path / "b.jsonl"}, r"must end in \.gz"),
        ({"rotate_bytes": 0}, "rotate_bytes must be an int >= 1"),
        ({"flush_interval": 0}, "flush_interval must be a number > 0"),
        ({"max_pending": 0}, "max_pending must be an int >= 1"),
        ({"max_messages": -1}, "max_messages must be an int >= 1"),
    ]
    for change, message in cases:
        arguments: dict[str, Any] = {"streams": [TRADE], "path": path, **change}
        with pytest.raises(ValueError, match=message):
            StreamRecorder(manager, arguments.pop("streams"), arguments.pop("path"), **arguments)
    assert not path.exists()
    assert manager.get_active_streams_count() == 0
    path.write_bytes(b"")
    with pytest.raises(FileExistsError, match="overwrite"):
        StreamRecorder(manager, [TRADE], path)
    StreamRecorder(manager, [TRADE], path, overwrite=True).close()
    assert isinstance(entries(path)[0], Header)


def test_a_write_error_ends_the_recording_and_is_reported(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    manager = make_manager()
    recorder = StreamRecorder(manager, [TRADE], tmp_path / "full.jsonl.gz")

    def disk_full(text: str) -> None:
        raise OSError(28, "No space left on device")

    recorder._writer.write = disk_full  # type: ignore[method-assign]
    with recorder:
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        assert recorder.wait(5 * SCALE)  # the writer stopped
        assert isinstance(recorder.error, OSError) and "No space" in str(recorder.error)
        exchange.publish(TRADE)  # ignored from now on, nothing queued
        assert recorder.stats().pending == 0
    manager.destroy()
    with pytest.raises(ManagerClosedError):
        StreamRecorder(manager, [TRADE], tmp_path / "closed.jsonl.gz")
    assert not (tmp_path / "closed.jsonl.gz").exists()
