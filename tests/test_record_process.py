"""``wsmanager record`` and ``wsmanager fake-exchange --replay`` as processes: a recording,
bad input, a recorder killed with SIGKILL mid-write, and a replay served to a manager."""

from __future__ import annotations

import gzip
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.recording import Message, RecordingWriter, encode_message, existing_parts, read
from wsmanager.testing import FakeExchange

TRADE, ETH = "btcusdt@trade", "ethusdt@trade"
WSMANAGER = [sys.executable, "-m", "wsmanager"]


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        WSMANAGER + args, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_record_command_writes_the_messages(exchange: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "cli.jsonl.gz"
    exchange.set_rate(50)
    result = _run(["record", TRADE, ETH, "-o", str(path), "--url", exchange.url, "--count", "20"])
    exchange.set_rate(0)
    assert result.returncode == 0, result.stderr
    assert f"recording 2 stream(s) from {exchange.url} into {path}" in result.stderr
    assert "recorded 20 message(s), 0 gap(s), 0 dropped, into 1 part(s)" in result.stderr
    messages = [e for e in read(path) if isinstance(e, Message)]
    assert len(messages) == 20 and {m.stream for m in messages} == {TRADE, ETH}
    for stream in (TRADE, ETH):
        numbers = [m.data["t"] for m in messages if m.stream == stream]
        assert numbers == list(range(1, len(numbers) + 1))
    # --seconds ends it too; --overwrite replaces the recording
    result = _run(
        ["record", TRADE, "-o", str(path), "--url", exchange.url, "--seconds", "0.3", "--overwrite"]
    )
    assert result.returncode == 0, result.stderr
    assert "recorded 0 message(s)" in result.stderr


def test_record_command_refuses_bad_input(tmp_path: Path) -> None:
    url = ["--url", "ws://127.0.0.1:9/ws/"]
    path = tmp_path / "x.jsonl.gz"
    path.write_bytes(b"")
    cases = [
        (["record", TRADE, "-o", str(path), *url], "exists"),
        (["record", "bad name", "-o", str(tmp_path / "y.jsonl.gz"), *url], "whitespace"),
        (["record", TRADE, "-o", str(tmp_path / "y.jsonl"), *url], "must end in .gz"),
        (["record", TRADE, "-o", str(tmp_path / "y.gz"), "--rotate-mb", "0", *url], "--rotate-mb"),
        (["record", TRADE, "-o", str(tmp_path / "y.gz"), "--count", "0", *url], "--count"),
        (["record", TRADE, "-o", str(tmp_path / "y.gz"), "--url", "http://x/"], "ws://"),
    ]
    for args, message in cases:
        result = _run(args)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
    assert not (tmp_path / "y.jsonl.gz").exists() and not (tmp_path / "y.gz").exists()
    assert _run(["record", TRADE, *url]).returncode == 2  # -o is required


def test_a_killed_recorder_leaves_readable_parts(exchange: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl.gz"
    rate = 100
    exchange.set_rate(rate)
    process = subprocess.Popen(
        [
            *WSMANAGER,
            "record",
            TRADE,
            ETH,
            "-o",
            str(path),
            "--url",
            exchange.url,
            "--rotate-mb",
            "0.004",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        third = tmp_path / "killed.2.jsonl.gz"
        assert wait_for(lambda: third.exists() and third.stat().st_size > 500, timeout=20)
        sent = {stream: exchange.stats(stream).sent for stream in (TRADE, ETH)}
        process.send_signal(signal.SIGKILL)  # mid-write: no chance to finish the part
        process.wait(10)
    finally:
        exchange.set_rate(0)
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()
    parts = existing_parts(path)
    assert len(parts) >= 3
    for part in parts[:-1]:
        gzip.decompress(part.read_bytes())  # the completed parts are whole gzip files
    reader = read(path)
    messages = [e for e in reader if isinstance(e, Message)]
    assert reader.truncated_parts == [parts[-1]]
    assert any(e.t for e in messages)  # the last part held lines that read back
    for stream in (TRADE, ETH):
        numbers = [m.data["t"] for m in messages if m.stream == stream]
        assert numbers == list(range(1, len(numbers) + 1))  # nothing missing before the cut
        # at most about a flush interval (1 s) of messages was lost
        assert sent[stream] - numbers[-1] <= rate * (1.0 + 0.5 * SCALE), (sent, numbers[-1])


@pytest.fixture
def replaying_exchange(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str]]]:
    path = tmp_path / "r.jsonl.gz"
    writer = RecordingWriter(path, streams=[TRADE, ETH], url="", clock=lambda: 0.0)
    for i in range(100):  # one second, two streams, 10 ms apart
        stream = TRADE if i % 2 else ETH
        payload = {"e": "trade", "s": stream[:7].upper(), "t": i // 2 + 1, "p": "1", "q": "2"}
        writer.write(encode_message(i * 0.01, stream, payload))
    writer.close()
    process = subprocess.Popen(
        [*WSMANAGER, "fake-exchange", "--port", "0", "--replay", str(path), "--speed", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    reader = threading.Thread(target=read_lines, name="test-stdout")
    reader.start()
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            reader.join(10)
            assert process.stderr is not None
            process.stderr.close()


def next_line(lines: queue.Queue[str], containing: str) -> str:
    while True:
        line = lines.get(timeout=10 * SCALE)
        if containing in line:
            return line


def test_fake_exchange_replays_a_recording_to_a_manager(
    replaying_exchange: tuple[subprocess.Popen[str], queue.Queue[str]],
) -> None:
    process, lines = replaying_exchange
    url = next_line(lines, "listening on").split("listening on ", 1)[1].split()[0]
    assert "at speed 10 starts when a client carries" in next_line(lines, "replay of")
    options = {**FAST, "streams_per_connection": 200}
    with WSManager(url=url, **options) as manager:
        got = {TRADE: Recorder(), ETH: Recorder()}
        gaps: list[object] = []
        manager.on_gap(gaps.append)
        for stream, recorder in got.items():
            manager.subscribe(stream, recorder)
        assert "replay started" in next_line(lines, "replay started")
        finished = next_line(lines, "replay finished")
        assert "replay finished: 100 message(s) in 0." in finished, finished
        for recorder in got.values():
            assert recorder.wait_messages(50)
            assert [m["t"] for m in recorder.messages] == list(range(1, 51))
        assert gaps == []
    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0


def test_fake_exchange_refuses_a_missing_recording(tmp_path: Path) -> None:
    result = _run(["fake-exchange", "--port", "0", "--replay", str(tmp_path / "none.jsonl.gz")])
    assert result.returncode == 1 and "no recording at" in result.stderr
    result = _run(
        ["fake-exchange", "--port", "0", "--replay", str(tmp_path / "n.gz"), "--speed", "0"]
    )
    assert result.returncode == 1 and "speed must be a number > 0" in result.stderr
    assert os.path.exists(tmp_path) and not list(tmp_path.iterdir())
