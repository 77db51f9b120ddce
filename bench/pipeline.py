"""The frame pipeline with default options: burst loss, CPU per message, fan-out, decoding.

    python bench/pipeline.py [--quick] [--write-results]

Every wsmanager case runs ``WSManager(url)`` with its **default options** (no raised buffer)
in a fresh process against ``bench/exchange.py`` in a process of its own; ratios are against
baselines measured in the same run (websocket-client's ``WebSocketApp`` and the websockets
asyncio client, via ``bench/cases.py``). Nothing here is asserted; the test suite never times.

- **burst**: N trade messages written back to back on one stream (raw ``/ws/``, and combined
  ``/stream?streams=``), a callback that only counts: sent vs delivered, dropped, msg/s, and the
  client process's CPU per message (every thread, from the first delivery to the last: the
  manager's set-up and destroy are not per-message costs; before 2026-12-06 they were included,
  which added about 0.5 us per message to 200,000).
- **fan-out**: one stream, 1 counting subscriber + 99 that do nothing, per message or
  ``batch=True``: msg/s against 1 subscriber.
- **decode**: trade and depth frames decoded in a loop: ``json.loads`` and ``orjson.loads`` into
  dicts, msgspec into the typed classes (``wsmanager.typed``), raw and enveloped.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import median, run_case

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- cases (each in a fresh process: ``python bench/pipeline.py case NAME PORT ARGS``) ----------


def case_burst(
    port: int, count: int, combined: int, subscribers: int, batch: int
) -> dict[str, Any]:
    from wsmanager import WSManager

    stream = f"burst-{count}@s{os.getpid()}"
    lock = threading.Lock()
    # wall and process CPU time at the first and the last delivery: per message, not the set-up
    state = {"count": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}
    done = threading.Event()

    def hit(message: Any) -> None:
        with lock:
            if not state["count"]:
                state["first"] = time.perf_counter()
                state["cpu_first"] = time.process_time()
            state["count"] += 1
            state["last"] = time.perf_counter()
            if state["count"] >= count:
                state["cpu_last"] = time.process_time()  # a system call: not per message
                done.set()

    def hit_batch(messages: list[Any]) -> None:
        with lock:
            if not state["count"]:
                state["first"] = time.perf_counter()
                state["cpu_first"] = time.process_time()
            state["count"] += len(messages)
            state["last"] = time.perf_counter()
            if state["count"] >= count:
                state["cpu_last"] = time.process_time()
                done.set()

    url = f"ws://127.0.0.1:{port}/" + ("stream" if combined else "ws/")
    options: dict[str, Any] = {} if combined else {"streams_per_connection": 1}
    with WSManager(url=url, **options) as manager:
        manager.subscribe(stream, hit_batch if batch else hit, batch=bool(batch))
        for _ in range(subscribers - 1):
            if batch:
                manager.subscribe(stream, lambda messages: None, batch=True)
            else:
                manager.subscribe(stream, lambda message: None)
        # every message, or 3 s without one
        while not done.wait(0.5):
            if state["count"] and time.perf_counter() - state["last"] > 3.0:
                state["cpu_last"] = time.process_time()  # some were lost: up to now
                break
        info = manager.get_stream_info()[0]
        dropped = info.dropped_messages
    cpu = state["cpu_last"] - state["cpu_first"]
    delivered = int(state["count"])
    seconds = state["last"] - state["first"]
    return {
        "sent": count,
        "delivered": delivered,
        "dropped": dropped,
        "msg_per_s": delivered / seconds if seconds > 0 else None,
        "cpu_us_per_msg": cpu / max(delivered - 1, 1) * 1e6,
    }


def case_decode(count: int) -> dict[str, Any]:
    import orjson

    from wsmanager.typed import decoder_for

    trade = json.dumps(
        {
            "e": "trade",
            "E": 1700000000000,
            "s": "BTCUSDT",
            "t": 12345,
            "p": "43251.12000000",
            "q": "0.00210000",
            "T": 1700000000000,
            "m": True,
            "M": True,
        },
        separators=(",", ":"),
    ).encode()
    depth = json.dumps(
        {
            "e": "depthUpdate",
            "E": 1700000000000,
            "s": "BTCUSDT",
            "U": 157,
            "u": 160,
            "b": [[f"{43000 + i}.10", "0.5"] for i in range(10)],
            "a": [[f"{43100 + i}.10", "0.25"] for i in range(10)],
        },
        separators=(",", ":"),
    ).encode()
    results: dict[str, Any] = {}
    for kind, stream, payload in (
        ("trade", "btcusdt@trade", trade),
        ("depth", "btcusdt@depth", depth),
    ):
        decode = decoder_for(stream)
        assert decode is not None and decode(payload, False) is not None
        frames = [payload] * count
        enveloped = b'{"stream":"' + stream.encode() + b'","data":' + payload + b"}"
        timings = {
            "json": _best(lambda fs=frames: [json.loads(f) for f in fs], count),
            "orjson": _best(lambda fs=frames: [orjson.loads(f) for f in fs], count),
            "typed": _best(lambda fs=frames, d=decode: [d(f, False) for f in fs], count),
            "typed_enveloped": _best(
                lambda fs=frames, d=decode, e=enveloped: [d(e, True) for _ in fs], count
            ),
        }
        results[kind] = timings
    return results


def _best(run: Any, count: int) -> float:
    """µs per item of the fastest of 5 runs."""
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / count * 1e6


# -- the driver ----------------------------------------------------------------------------------


def _peer(port: int, client: str, count: int) -> dict[str, Any]:
    return run_case(HERE / "cases.py", "throughput", client, port, 1, count)


def run(port: int, repeat: int, quick: bool) -> dict[str, Any]:
    count = 50_000 if quick else 200_000
    results: dict[str, Any] = {"count": count}

    def cases(name: str, *args: object) -> dict[str, Any]:
        runs = [run_case(__file__, "case", name, *args) for _ in range(repeat)]
        errors = [r["error"] for r in runs if "error" in r]
        good = [r for r in runs if "error" not in r]
        merged: dict[str, Any] = {"errors": errors}
        for key in ("msg_per_s", "cpu_us_per_msg", "delivered", "dropped"):
            merged[key] = median(good, key)
        merged["worst_delivered"] = min((r["delivered"] for r in good), default=None)
        merged["most_dropped"] = max((r["dropped"] for r in good), default=None)
        print(f"  {name} {args}: {merged}", file=sys.stderr)
        return merged

    results["burst_raw"] = cases("burst", port, count, 0, 1, 0)
    results["burst_combined"] = cases("burst", port, count, 1, 1, 0)
    for client in ("wsapp", "websockets-asyncio"):
        runs = [_peer(port, client, count // 2) for _ in range(repeat)]
        results[client] = {"msg_per_s": median(runs, "msg_per_s")}
        print(f"  {client}: {results[client]}", file=sys.stderr)
    fan = count // 2
    results["fan_1"] = cases("burst", port, fan, 0, 1, 0)
    results["fan_100"] = cases("burst", port, fan, 0, 100, 0)
    results["fan_1_batch"] = cases("burst", port, fan, 0, 1, 1)
    results["fan_100_batch"] = cases("burst", port, fan, 0, 100, 1)
    results["decode"] = run_case(__file__, "case", "decode", 20_000 if quick else 100_000)
    print(f"  decode: {results['decode']}", file=sys.stderr)
    return results


def _x(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def report(results: dict[str, Any], meta: str) -> str:
    raw, combined = results["burst_raw"], results["burst_combined"]
    wsapp, aio = results["wsapp"]["msg_per_s"], results["websockets-asyncio"]["msg_per_s"]
    ours = raw["msg_per_s"]
    decode = results["decode"]
    f1, f100 = results["fan_1"]["msg_per_s"], results["fan_100"]["msg_per_s"]
    b1, b100 = results["fan_1_batch"]["msg_per_s"], results["fan_100_batch"]["msg_per_s"]
    count = results["count"]

    def met(ok: bool | None) -> str:
        return "yes" if ok else "NO"

    lines = [
        meta,
        "",
        "| figure (default options) | measured | target | met |",
        "|---|---|---|---|",
    ]
    for name, burst in (("one stream, raw `/ws/`", raw), ("combined `/stream`", combined)):
        lines.append(
            f"| burst of {count:,} back to back, {name}: delivered / dropped (worst run) | "
            f"{burst['worst_delivered'] or 0:,} / {burst['most_dropped'] or 0:,} | "
            f"{count:,} / 0 | {met(burst['worst_delivered'] == count)} |"
        )
    lines += [
        f"| one stream, msg/s (defaults) | {ours or 0:,.0f} | - | - |",
        f"| one stream / raw WebSocketApp | {_x(ours, wsapp)} ({wsapp or 0:,.0f} msg/s) | >= 5x "
        f"| {met(bool(ours and wsapp and ours / wsapp >= 5))} |",
        f"| one stream / websockets asyncio client | {_x(ours, aio)} ({aio or 0:,.0f} msg/s) | "
        f">= 1.3x | {met(bool(ours and aio and ours / aio >= 1.3))} |",
        f"| CPU per message, one stream (every thread) | {raw['cpu_us_per_msg'] or 0:.2f} us | "
        f"<= 4 us | {met((raw['cpu_us_per_msg'] or 99) <= 4)} |",
        f"| CPU per message, combined | {combined['cpu_us_per_msg'] or 0:.2f} us | - | - |",
        f"| 100 per-message subscribers cost (1 sub / 100 subs msg/s) | {_x(f1, f100)} "
        f"({f100 or 0:,.0f} vs {f1 or 0:,.0f}) | <= 1.4x "
        f"| {met(bool(f1 and f100 and f1 / f100 <= 1.4))} |",
        f"| 100 batch subscribers cost | {_x(b1, b100)} ({b100 or 0:,.0f} vs {b1 or 0:,.0f}) | "
        f"<= 1.2x | {met(bool(b1 and b100 and b1 / b100 <= 1.2))} |",
    ]
    for kind in ("trade", "depth"):
        t = decode[kind]
        lines.append(
            f"| decode a {kind}: typed (msgspec) / json.loads / orjson.loads / typed enveloped | "
            f"{t['typed']:.2f} / {t['json']:.2f} / {t['orjson']:.2f} / "
            f"{t['typed_enveloped']:.2f} us | typed < json, <= 1.1x orjson | "
            f"{met(t['typed'] < t['json'] and t['typed'] <= 1.1 * t['orjson'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "case":
        name, *rest = sys.argv[2:]
        args = [int(a) for a in rest]
        result = case_burst(*args) if name == "burst" else case_decode(*args)
        print(json.dumps(result))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write-results", action="store_true")
    options = parser.parse_args()
    port = _free_port()
    exchange = subprocess.Popen(
        [sys.executable, str(HERE / "exchange.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert exchange.stdout is not None and exchange.stdout.readline().strip() == "ready"
        results = run(port, 1 if options.quick else options.repeat, options.quick)
    finally:
        exchange.terminate()
        exchange.wait(10)
    load = os.getloadavg()[0]
    meta = (
        f"Run {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores "
        f"(load average {load:.1f} at the end: the machine was shared); Python "
        f"{platform.python_version()}; medians of {1 if options.quick else options.repeat}."
    )
    text = report(results, meta)
    print(text)
    if options.write_results:
        path = HERE / "RESULTS.md"
        current = path.read_text()
        head = "## The frame pipeline with default options (`bench/pipeline.py`)"
        section = f"{head}\n\n{text}\n"
        if head in current:
            before, _, after = current.partition(head)
            rest = after.split("\n## ", 1)
            current = before + section + ("\n## " + rest[1] if len(rest) > 1 else "")
        else:
            current = current.rstrip() + "\n\n" + section
        path.write_text(current)


if __name__ == "__main__":
    main()
