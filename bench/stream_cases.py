"""The cases of ``bench/streams.py``: each runs in a fresh process and prints one JSON line.

    python bench/stream_cases.py NAME ARGS...     # idle, deliver, throughput, rotation

Each starts its exchange in a process of its own (:mod:`stream_exchanges`).
"""

from __future__ import annotations

import gc
import itertools
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stream_exchanges import RulesExchange, _json_line, _rss_kib

HERE = Path(__file__).resolve().parent


def _names(count: int) -> list[str]:
    return [f"s{i}@trade" for i in range(count)]


def case_idle(streams: int) -> dict[str, Any]:
    """RSS with 0 vs ``streams`` idle streams, subscribed and carried; threads; connections."""
    from wsmanager import WSManager

    exchange = RulesExchange(rate=0.0)
    try:
        manager = WSManager(url=exchange.url)
        gc.collect()
        time.sleep(0.5)
        before = _rss_kib()
        for name in _names(streams):
            manager.subscribe(name, lambda message: None)
        carried = exchange.ask("wait_carried", streams, 60)
        time.sleep(1.0)
        gc.collect()
        after = _rss_kib()
        metrics = manager.get_metrics()
        threads = threading.active_count()
        manager.destroy()
        exchange.ask("wait_closed", 10)
        report = exchange.ask("report")
    finally:
        exchange.close()
    return {
        "carried": carried["carried"],
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": (after - before) / streams,
        "threads": threads,
        "connections": metrics.active_connections,
        "violations": report["violations"],
    }


def case_deliver(streams: int, rate: float, hold: float) -> dict[str, Any]:
    """Subscribe ``streams`` in a tight loop on the rule-enforcing exchange publishing each at
    ``rate``; seconds from the last subscribe call to every stream having delivered; then
    ``hold`` seconds of flow, and what the exchange saw."""
    from wsmanager import WSManager

    exchange = RulesExchange(rate=rate)
    first: dict[str, float] = {}
    lock = threading.Lock()
    everyone = threading.Event()

    def subscriber(name: str) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            if name not in first:
                with lock:
                    first.setdefault(name, time.monotonic())
                    if len(first) == streams:
                        everyone.set()

        return on_message

    try:
        manager = WSManager(url=exchange.url)
        names = _names(streams)
        started = time.monotonic()
        for name in names:
            manager.subscribe(name, subscriber(name))
        last_call = time.monotonic()
        delivered = everyone.wait(60)
        with lock:
            arrivals = sorted(first.values())
            count = len(first)
        threads_flowing = threading.active_count()
        connections = manager.get_metrics().active_connections
        threading.Event().wait(hold)  # messages flow meanwhile
        metrics = manager.get_metrics()
        threads_held = threading.active_count()
        report = exchange.ask("report")  # before destroy: the streams each connection carries
        manager.destroy()
        exchange.ask("wait_closed", 10)
        closed = exchange.ask("report")  # after: violations while closing count too
    finally:
        exchange.close()
    per_connection = [c["streams"] for c in report["connections"]]
    client_messages = [c["client_messages"] for c in report["connections"]]
    return {
        "delivered": delivered,
        "streams_delivering": count,
        "subscribe_loop_s": last_call - started,
        "seconds_after_last_subscribe": arrivals[-1] - last_call if arrivals else None,
        "median_after_last_subscribe": (
            statistics.median(arrivals) - last_call if arrivals else None
        ),
        "threads": max(threads_flowing, threads_held),
        "connections": connections,
        "exchange_connections": len(report["connections"]),
        "attempts": report["attempts"],
        "streams_per_connection": per_connection,
        "client_messages_max": max(client_messages, default=0),
        "violations": closed["violations"],
        "gaps": metrics.gaps,
        "dropped": metrics.dropped_messages,
        "messages": metrics.messages_received,
    }


def case_throughput(streams: int, per_stream: int, reader: str, mode: str) -> dict[str, Any]:
    """Messages per second delivered to callbacks, and CPU seconds per message (every thread of
    this process), while the fast exchange sends ``per_stream`` trades of each of ``streams``
    streams as fast as it can. ``reader``: ``fast`` (ours) or ``public`` (websocket-client's);
    ``mode``: ``combined`` (the defaults) or ``raw`` (``streams_per_connection=1``). Buffers keep
    their defaults: back-pressure, not a raised buffer, keeps every message (``dropped`` says)."""
    from wsmanager import WSManager
    from wsmanager.net import _wsclient

    if reader == "public":
        _wsclient.FAST_READER_AVAILABLE = False  # connections use websocket-client's reader
    total = streams * per_stream
    child = subprocess.Popen(
        [sys.executable, str(HERE / "stream_exchanges.py"), "serve", str(streams), str(per_stream)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    counter = iter(range(1, total + 1))
    wall = [0.0, 0.0]  # first, last arrival (perf_counter)
    cpu = [0.0, 0.0]  # process CPU time at the first and the last arrival
    done = threading.Event()

    def hit(message: Any) -> None:
        n = next(counter)  # atomic under the GIL
        now = time.perf_counter()
        if n == 1:
            wall[0], cpu[0] = now, time.process_time()
        wall[1] = now
        if n == total:
            cpu[1] = time.process_time()
            done.set()

    options: dict[str, Any] = {"max_retry_attempts": None}  # otherwise the default options
    if mode == "raw":
        options["streams_per_connection"] = 1
    elif mode.startswith("spc="):  # a diagnostic: streams per connection as given
        options["streams_per_connection"] = int(mode[4:])
    try:
        port = _json_line(child.stdout)["port"]
        with WSManager(url=f"ws://127.0.0.1:{port}/ws/", **options) as manager:
            for name in _names(streams):
                manager.subscribe(name, hit)
            complete = done.wait(120)
            metrics = manager.get_metrics()
    finally:
        if child.stdin is not None:
            child.stdin.close()
        child.wait(30)
    if not complete:
        return {"error": f"{total - len(list(counter))} of {total} messages in 120 s"}
    elapsed = wall[1] - wall[0]
    return {
        "msg_per_s": (total - 1) / elapsed,
        "cpu_us_per_msg": (cpu[1] - cpu[0]) / (total - 1) * 1e6,
        "dropped": metrics.dropped_messages,
        "connections": metrics.connections,
        "fast_reader": _wsclient.FAST_READER_AVAILABLE,
    }


def case_rotation(
    streams: int, rate: float, age: float, rotations: int, seconds: float
) -> dict[str, Any]:
    """A ``rate`` msg/s trade feed per stream through ``rotations`` planned rotations
    (``max_connection_age=age``; ``age`` 0: none, for ``seconds``, the baseline): sequence
    numbers at the subscriber, gaps reported, the longest pause, connections at the exchange."""
    from wsmanager import WSManager

    exchange = RulesExchange(rate=rate)
    lock = threading.Lock()
    last_t: dict[str, int] = {}
    last_at: dict[str, float] = {}
    pauses: list[float] = []
    counts = {"messages": 0, "duplicates": 0, "jumps": 0, "gap_calls": 0}
    measuring = threading.Event()

    def subscriber(name: str) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            now = time.monotonic()
            with lock:
                previous = last_t.get(name)
                t = message["t"]
                if previous is not None:
                    if t <= previous:
                        counts["duplicates"] += 1
                    elif t > previous + 1:
                        counts["jumps"] += 1
                    if measuring.is_set() and name in last_at:
                        pauses.append(now - last_at[name])
                last_t[name] = max(t, previous or 0)
                last_at[name] = now
                counts["messages"] += 1

        return on_message

    def on_gap(gap: Any) -> None:
        with lock:
            counts["gap_calls"] += 1

    try:
        manager = WSManager(url=exchange.url, max_connection_age=age or None)
        manager.on_gap(on_gap)
        for name in _names(streams):
            manager.subscribe(name, subscriber(name))
        deadline = time.monotonic() + 10
        while len(last_at) < streams and time.monotonic() < deadline:
            time.sleep(0.01)
        measuring.set()
        started = time.monotonic()
        while time.monotonic() - started < (seconds if not age else 600):
            if age and manager.get_metrics().rotations >= rotations:
                break
            time.sleep(0.05)
        if age:  # let the last handover finish
            time.sleep(1.0)
        elapsed = time.monotonic() - started
        metrics = manager.get_metrics()
        threads = threading.active_count()
        manager.destroy()
        exchange.ask("wait_closed", 10)
        report = exchange.ask("report")
    finally:
        exchange.close()
    connections = sorted(report["connections"], key=lambda c: c["opened"])
    overlaps = [
        a["closed"] - b["opened"]
        for a, b in itertools.pairwise(connections)
        if a["closed"] is not None and a["closed"] > b["opened"]
    ]
    pauses.sort()
    return {
        "seconds": elapsed,
        "rotations": metrics.rotations,
        "messages": counts["messages"],
        "duplicates_seen": counts["duplicates"],
        "jumps_seen": counts["jumps"],
        "gap_calls": counts["gap_calls"],
        "gaps_metric": metrics.gaps,
        "duplicates_dropped": metrics.duplicates_dropped,
        "max_pause_s": pauses[-1] if pauses else None,
        "p999_pause_s": pauses[int(len(pauses) * 0.999)] if pauses else None,
        "max_open_connections": _max_concurrent(connections),
        "attempts": report["attempts"],
        "overlap_median_s": statistics.median(overlaps) if overlaps else None,
        "overlap_max_s": max(overlaps) if overlaps else None,
        "client_messages_max": max((c["client_messages"] for c in connections), default=0),
        "close_codes": sorted({str(c["close_code"]) for c in connections}),
        "threads": threads,
        "violations": report["violations"],
    }


def _max_concurrent(connections: list[dict[str, Any]]) -> int:
    events = [(c["opened"], 1) for c in connections]
    events += [(c["closed"], -1) for c in connections if c["closed"] is not None]
    peak = level = 0
    for _at, change in sorted(events, key=lambda e: (e[0], e[1])):
        level += change
        peak = max(peak, level)
    return peak


CASES: dict[str, Callable[..., dict[str, Any]]] = {
    "idle": case_idle,
    "deliver": case_deliver,
    "throughput": case_throughput,
    "rotation": case_rotation,
}


if __name__ == "__main__":
    name, *rest = sys.argv[1:]
    values = [a if not a[:1].isdigit() else float(a) if "." in a else int(a) for a in rest]
    print(json.dumps(CASES[name](*values)))
