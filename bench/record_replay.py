"""What recording and replaying cost, and how well a replay keeps time.

1. Recording a live feed: the fake exchange runs in a child process and sends ``--streams``
   trade streams at ``--rate`` msg/s each; this process holds one WSManager with a no-op
   callback per stream, first alone (the baseline), then with a Recorder writing the same streams
   to disk. Printed: this process's CPU per message in both runs, their ratio, the drops, and
   the bytes per message on disk.
2. The writer's ceiling: messages pushed into a Recorder's callback as fast as one thread can,
   against a plain loop that encodes and gzips the same lines itself (no queue, no thread).
3. Replay timing: a synthetic recording at 1,000 msg/s replayed at ``--speed`` into an
   in-process exchange with a manager subscribed: lateness of each arrival against its
   schedule (p50, p99, max) and the total duration against the recorded one divided by speed.
4. Replay throughput at ``speed=math.inf`` against ``FakeExchange.publish`` called in a loop
   (the exchange's own way to send given payloads), both into the same manager.

Run: ``python bench/record_replay.py [--streams 20] [--rate 250] [--seconds 5] [--speed 10]``
(Linux).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from wsmanager import WSManager
from wsmanager.record import Recorder
from wsmanager.recording import RecordingWriter, encode_message
from wsmanager.testing import FakeExchange

CHILD = """
import sys
from wsmanager.testing import FakeExchange
with FakeExchange(seed=1) as exchange:
    print(exchange.url, flush=True)
    for line in sys.stdin:                    # commands: go, stop
        if line == "go\\n":
            exchange.set_rate(float(sys.argv[1]))
        else:
            break
"""

QUIET: dict[str, Any] = {"connection_budget": None, "idle_timeout": None}


def trade(n: int) -> dict[str, Any]:
    return {
        "e": "trade",
        "E": 1_700_000_000_000 + n,
        "s": "BTCUSDT",
        "t": n,
        "p": f"{60000 + n % 1000}.12000000",
        "q": "0.01230000",
        "T": 1_700_000_000_000 + n,
        "m": n % 2 == 0,
        "M": True,
    }


def live_cost(streams: list[str], rate: float, seconds: float, directory: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    url = child.stdout.readline().strip()
    results = {}
    try:
        with WSManager(url=url, **QUIET) as manager:
            count = [0]

            def on_message(message: Any) -> None:
                count[0] += 1

            for stream in streams:
                manager.subscribe(stream, on_message)
            child.stdin.write("go\n")
            child.stdin.flush()
            time.sleep(1.0)  # warm up: every stream flowing
            for label in ("baseline", "recording"):
                recorder = None
                if label == "recording":
                    recorder = Recorder(manager, streams, directory / "live.jsonl.gz")
                    time.sleep(0.5)
                before, cpu, started = count[0], time.process_time(), time.monotonic()
                time.sleep(seconds)
                messages = count[0] - before
                results[label] = (time.process_time() - cpu, messages, time.monotonic() - started)
                if recorder is not None:
                    recorder.close()
                    stats = recorder.stats()
                    results["disk"] = (stats.bytes_written, stats.messages, stats.dropped)
        child.stdin.write("stop\n")
        child.stdin.flush()
    finally:
        child.wait(10)
    base_cpu, base_n, base_t = results["baseline"]
    rec_cpu, rec_n, rec_t = results["recording"]
    size, written, dropped = results["disk"]
    base_us, rec_us = base_cpu / base_n * 1e6, rec_cpu / rec_n * 1e6
    received = base_n / base_t
    print(f"1. live: {len(streams)} streams x {rate:g} msg/s ({received:,.0f} msg/s received)")
    print(f"   CPU per message  manager alone {base_us:.1f} us; with the recorder {rec_us:.1f} us")
    print(f"   ratio            {rec_us / base_us:.2f}x (recording adds {rec_us - base_us:.1f} us)")
    print(f"   CPU share        {base_cpu / base_t:.0%} -> {rec_cpu / rec_t:.0%} of one core")
    print(f"   on disk          {size / written:.1f} bytes per message; dropped {dropped}")


class _NoManager:
    """Just enough of a manager for a Recorder whose callbacks the bench calls itself."""

    destroyed = False

    class config:  # mimics WSManager.config
        url = "ws://bench/ws/"

    def on_gap(self, callback: Any) -> Any:
        return lambda: None

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        return lambda: None


def writer_ceiling(count: int, directory: Path) -> None:
    payloads = [trade(n) for n in range(count)]
    started = time.perf_counter()
    with gzip.open(directory / "plain.jsonl.gz", "wb", compresslevel=6) as plain:
        for n, payload in enumerate(payloads):
            line = {"t": 1e9 + n / 1000, "stream": "btcusdt@trade", "data": payload}
            plain.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
    baseline = count / (time.perf_counter() - started)
    recorder = Recorder(
        _NoManager(),  # type: ignore[arg-type]
        ["btcusdt@trade"],
        directory / "ceiling.jsonl.gz",
        max_pending=count,
    )
    callback = recorder._message_callback("btcusdt@trade")
    started = time.perf_counter()
    for payload in payloads:
        callback(payload)
    recorder.close()
    ours = count / (time.perf_counter() - started)
    print(f"2. writer ceiling: {ours:,.0f} msg/s through Recorder (queue + writer thread)")
    print(f"   baseline        {baseline:,.0f} msg/s json.dumps + gzip in one loop")
    print(f"   ratio           {ours / baseline:.2f}x; dropped {recorder.stats().dropped}")


def synthetic(path: Path, count: int, interval: float) -> None:
    writer = RecordingWriter(path, streams=["btcusdt@trade"], url="", clock=lambda: 1e9)
    for n in range(count):
        writer.write(encode_message(1e9 + n * interval, "btcusdt@trade", trade(n + 1)))
    writer.close()


def replay_timing(speed: float, directory: Path) -> None:
    path = directory / "timing.jsonl.gz"
    count, interval = 20_000, 0.001
    synthetic(path, count, interval)
    arrivals: list[float] = []
    done = threading.Event()
    with FakeExchange() as exchange, WSManager(url=exchange.url, **QUIET) as manager:

        def on_message(message: Any) -> None:
            arrivals.append(time.monotonic())
            if len(arrivals) == count:
                done.set()

        manager.subscribe("btcusdt@trade", on_message)
        exchange.wait_for_open("btcusdt@trade", 1)
        started = time.monotonic()
        replay = exchange.replay(path, speed=speed)
        done.wait(60)
        replay.wait(10)
    late = sorted(a - (started + n * interval / speed) for n, a in enumerate(arrivals))
    expected = (count - 1) * interval / speed
    took = arrivals[-1] - started
    print(f"3. replay timing: {count:,} messages at 1,000 msg/s recorded, speed {speed:g}")
    print(
        f"   lateness        p50 {statistics.median(late) * 1e3:.2f} ms, "
        f"p99 {late[int(len(late) * 0.99)] * 1e3:.2f} ms, max {late[-1] * 1e3:.2f} ms"
    )
    print(f"   duration        {took:.3f} s for {expected:.3f} s: {took / expected:.3f}x")


def replay_throughput(directory: Path) -> None:
    path = directory / "fast.jsonl.gz"
    count = 50_000
    synthetic(path, count, 0.001)
    payloads = [trade(n + 1) for n in range(count)]
    results = {}
    with FakeExchange() as exchange, WSManager(url=exchange.url, **QUIET) as manager:
        received = [0]
        changed = threading.Condition()

        def on_message(message: Any) -> None:
            with changed:
                received[0] += 1
                changed.notify_all()

        manager.subscribe("btcusdt@trade", on_message)
        exchange.wait_for_open("btcusdt@trade", 1)
        for label in ("replay", "publish"):  # publish after: its t continue the recording's
            base = received[0]
            started = time.perf_counter()
            if label == "replay":
                exchange.replay(path, speed=math.inf)
            else:
                for payload in payloads:
                    exchange.publish("btcusdt@trade", {**payload, "t": payload["t"] + count})
            with changed:
                changed.wait_for(lambda b=base: received[0] - b >= count, 60)  # type: ignore[misc]
            results[label] = count / (time.perf_counter() - started)
    print("4. replay throughput (speed inf, to delivery in the manager)")
    print(f"   replay          {results['replay']:,.0f} msg/s")
    print(f"   baseline        {results['publish']:,.0f} msg/s FakeExchange.publish in a loop")
    print(f"   ratio           {results['replay'] / results['publish']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--speed", type=float, default=10.0)
    args = parser.parse_args()
    streams = [f"s{i}usdt@trade" for i in range(args.streams)]
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        live_cost(streams, args.rate, args.seconds, directory)
        writer_ceiling(100_000, directory)
        replay_timing(args.speed, directory)
        replay_throughput(directory)


if __name__ == "__main__":
    main()
