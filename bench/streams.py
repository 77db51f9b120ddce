"""Many streams per connection (issue 11) and what the private frame reader buys (issue 10).

    python bench/streams.py [--quick] [--repeat N] [--write-results]

Every figure comes from a fresh process (``python bench/streams.py case NAME ARGS...``, one JSON
line out) that starts its exchange in a process of its own:

- ``exchange`` mode: the bundled ``FakeExchange`` enforcing Binance's rules
  (``BINANCE_SPOT_RULES``), driven over stdin (rate, what it saw), where the rules matter;
- ``serve`` mode: a raw exchange that writes pre-framed messages as fast as the socket takes
  them, so that it is never the bottleneck, where throughput matters. It serves
  ``/stream?streams=a/b`` (envelopes, ``SUBSCRIBE`` answered) and ``/ws/<stream>`` (raw), and
  starts sending once every expected stream is carried.

Figures are printed with their target and written as a section of bench/RESULTS.md. Ratios are
against a baseline measured in the same run. Nothing is asserted; the test suite never times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import gc
import hashlib
import itertools
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from common import median, run_case
from exchange import read_client_frame

HERE = Path(__file__).resolve().parent
SECTION = "## Many streams per connection (`bench/streams.py`)"


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _json_line(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise RuntimeError("the exchange process ended")
    return json.loads(line)


# -- the rule-enforcing exchange (``exchange`` mode, a child of a case) ---------------------------


def exchange_main(rate: float) -> None:
    """FakeExchange(rules=BINANCE_SPOT_RULES); one JSON answer per stdin command."""
    from wsmanager.testing import BINANCE_SPOT_RULES, FakeExchange

    with FakeExchange(rules=BINANCE_SPOT_RULES, rate=rate, seed=1) as exchange:
        print(json.dumps({"port": exchange.port}), flush=True)

        def carried() -> int:
            return len(set().union(*(c.streams for c in exchange.connections())))

        for line in sys.stdin:
            command, *args = line.split()
            answer: dict[str, Any] = {}
            if command == "rate":
                exchange.set_rate(float(args[0]))
            elif command == "wait_carried":  # every one of N streams carried by a connection
                count, timeout = int(args[0]), float(args[1])
                answer["ok"] = exchange.wait_until(_at_least(carried, count), timeout)
                answer["carried"] = carried()
            elif command == "wait_closed":  # every connection closed, so that all is counted
                answer["ok"] = exchange.wait_until(
                    lambda: exchange.open_connections() == 0, float(args[0])
                )
            elif command == "report":
                answer["violations"] = [f"{v.kind}: {v.detail}" for v in exchange.violations()]
                answer["attempts"] = exchange.total_attempts()
                answer["connections"] = [
                    {
                        "opened": c.opened_at,
                        "closed": c.closed_at,
                        "streams": len(c.streams),
                        "client_messages": c.client_messages,
                        "close_code": c.close_code,
                    }
                    for c in exchange.connections(open_only=False)
                ]
            else:
                break
            print(json.dumps(answer), flush=True)


def _at_least(measure: Callable[[], int], count: int) -> Callable[[], bool]:
    return lambda: measure() >= count


class RulesExchange:
    """The case's handle on its ``exchange`` child process."""

    def __init__(self, rate: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "exchange", str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(_json_line(self.process.stdout)["port"])
        self.url = f"ws://127.0.0.1:{self.port}/ws/"

    def ask(self, *command: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, command)) + "\n")
        self.process.stdin.flush()
        return dict(_json_line(self.process.stdout))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


# -- the fast exchange (``serve`` mode) ----------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TRADE = (
    '{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":%d,"p":"43251.12000000",'
    '"q":"0.00210000","T":1700000000000,"m":true,"M":true}'
)


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    if n < 65536:
        return bytes([0x80 | opcode, 126]) + struct.pack("!H", n) + payload
    return bytes([0x80 | opcode, 127]) + struct.pack("!Q", n) + payload


def _burst(streams: list[str], per_stream: int, combined: bool) -> bytes:
    """``per_stream`` trades of each stream (``t`` from 1), the streams interleaved."""
    prefixes = [f'{{"stream":"{s}","data":'.encode() if combined else b"" for s in streams]
    suffix = b"}" if combined else b""
    frames = [
        _frame(prefix + (TRADE % t).encode() + suffix)
        for t in range(1, per_stream + 1)
        for prefix in prefixes
    ]
    return b"".join(frames)


class FastExchange:
    """Counts the streams carried; once ``expected`` are, every connection sends its burst."""

    def __init__(self, expected: int, per_stream: int) -> None:
        self.expected = expected
        self.per_stream = per_stream
        self.carried: set[str] = set()
        self.go = asyncio.Event()

    def carry(self, streams: list[str], mine: list[str]) -> None:
        mine.extend(s for s in streams if s not in mine)
        self.carried.update(streams)
        if len(self.carried) >= self.expected:
            self.go.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = request.split("\r\n")
        target = urlsplit(lines[0].split(" ")[1])
        key = next(ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("sec-"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        combined = target.path.startswith("/stream")
        mine: list[str] = []
        if combined:
            named = parse_qs(target.query).get("streams", [""])[0]
            self.carry([s for s in named.split("/") if s], mine)
        else:
            self.carry([target.path.rsplit("/", 1)[1]], mine)
        control = asyncio.create_task(self._control(reader, writer, mine))
        try:
            await self.go.wait()
            blob = _burst(mine, self.per_stream, combined)
            for start in range(0, len(blob), 1 << 20):
                writer.write(blob[start : start + (1 << 20)])
                await writer.drain()
            await control
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            control.cancel()
            writer.close()

    async def _control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mine: list[str]
    ) -> None:
        """Answer SUBSCRIBE, pings and the close frame; return when the client goes."""
        try:
            while True:
                opcode, data = await read_client_frame(reader)
                if opcode == 0x9:
                    writer.write(_frame(data, 0xA))
                elif opcode == 0x8:
                    writer.write(_frame(data[:2], 0x8))
                    return
                elif opcode == 0x1:
                    request = json.loads(data)
                    if request.get("method") == "SUBSCRIBE":
                        self.carry(list(request["params"]), mine)
                    answer = {"result": None, "id": request.get("id")}
                    writer.write(_frame(json.dumps(answer).encode()))
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def serve_main(expected: int, per_stream: int) -> None:
    async def main() -> None:
        exchange = FastExchange(expected, per_stream)
        server = await asyncio.start_server(exchange.handle, "127.0.0.1", 0, limit=1 << 20)
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        async with server:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


# -- cases (each in a fresh process) -------------------------------------------------------------


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
    ``mode``: ``combined`` (the defaults) or ``raw`` (``streams_per_connection=1``). Buffers are
    raised so that no message is dropped: what is measured is delivery, not the drop policy."""
    from wsmanager import WSManager
    from wsmanager.net import _wsclient

    if reader == "public":
        _wsclient.FAST_READER_AVAILABLE = False  # connections use websocket-client's reader
    total = streams * per_stream
    child = subprocess.Popen(
        [sys.executable, __file__, "serve", str(streams), str(per_stream)],
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

    options: dict[str, Any] = {
        "max_retry_attempts": None,
        "max_buffered_messages": max(10_000, total),
        "max_buffered_bytes": 1 << 30,
    }
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


# -- the run: cases in fresh processes, figures against targets ----------------------------------


def _case(*args: object) -> dict[str, Any]:
    return run_case(__file__, "case", *args, timeout=900)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(quick: bool, repeat: int) -> dict[str, Any]:
    streams, total = 1000, (50_000 if quick else 200_000)
    results: dict[str, Any] = {"quick": quick, "repeat": repeat, "total_messages": total}
    results["idle"] = [_case("idle", streams) for _ in range(repeat)]
    _say(f"  idle        {results['idle']}")
    hold = 3.0 if quick else 10.0
    results["deliver"] = [_case("deliver", streams, 2.0, hold) for _ in range(repeat)]
    _say(f"  deliver     {results['deliver']}")

    throughput: dict[str, list[dict[str, Any]]] = {}
    results["throughput"] = throughput
    configs = {  # the baseline, 1 stream with the defaults, is "combined_1_fast"
        "thousand": (streams, "fast", "combined"),
        "thousand_one_connection": (streams, "fast", f"spc={streams}"),
    }
    for mode in ("combined", "raw"):
        for count in (1, 16):
            for reader in ("fast", "public"):
                configs[f"{mode}_{count}_{reader}"] = (count, reader, mode)
    for _ in range(repeat):  # interleaved, so that a noisy spell hits every figure alike
        for key, (count, reader, mode) in configs.items():
            result = _case("throughput", count, total // count, reader, mode)
            throughput.setdefault(key, []).append(result)
            _say(f"  {key:<26} {result}")

    rotations = 30 if quick else 100
    results["rotation"] = _case("rotation", 4, 50.0, 0.3, rotations, 0)
    _say(f"  rotation    {results['rotation']}")
    seconds = results["rotation"].get("seconds", 30.0)
    results["steady"] = _case("rotation", 4, 50.0, 0, 0, seconds)
    _say(f"  steady      {results['steady']}")
    return results


def _fmt(value: float | None, spec: str = ",.0f") -> str:
    return "n/a" if value is None else format(value, spec)


def _all(runs: list[dict[str, Any]], key: str) -> list[Any]:
    return [r[key] for r in runs if r.get(key) is not None]


Row = tuple[str, str, str, "bool | None"]


def figures(results: dict[str, Any]) -> list[Row]:
    """(figure, measured, target, met) rows; met None: information, no target."""
    rows: list[Row] = []
    idle, deliver = results["idle"], results["deliver"]
    connections = max(_all(deliver, "connections"), default=None)
    threads = max(_all(deliver, "threads"), default=None)
    rows.append(("connections, 1,000 streams", f"{connections}", "<= 5", _le(connections, 5)))
    limit = 2 * (connections or 0) + 3
    rows.append(
        (
            "threads, 1,000 streams flowing (main thread included)",
            f"{threads} (idle: {max(_all(idle, 'threads'), default=None)})",
            f"<= 2 x {connections} + 3 = {limit}",
            _le(threads, limit),
        )
    )
    kib = median(idle, "kib_per_stream")
    rows.append(
        (
            "RSS per idle stream (0 vs 1,000 carried; median)",
            f"{_fmt(kib, '.1f')} KiB",
            "<= 8 KiB",
            _le(kib, 8.0),
        )
    )
    worst = max(_all(deliver, "seconds_after_last_subscribe"), default=None)
    loop = median(deliver, "subscribe_loop_s")
    rows.append(
        (
            "last subscribe() -> all 1,000 delivered (feed 2 msg/s; worst run)",
            f"{_fmt(worst, '.2f')} s (median stream "
            f"{_fmt(median(deliver, 'median_after_last_subscribe'), '.2f')} s; "
            f"1,000 calls {_fmt(loop, '.2f')} s)",
            "<= 5 s",
            _le(worst, 5.0),
        )
    )
    broken = sum(len(r.get("violations", ["no answer"])) for r in idle + deliver)
    rows.append(("exchange rule violations, 1,000 streams", f"{broken}", "0", broken == 0))
    lost = sum(r.get("gaps", 0) + r.get("dropped", 0) for r in deliver)
    rows.append(("gaps + drops, 1,000 streams at 2 msg/s", f"{lost}", "0", lost == 0))
    rows += _throughput_rows(results["throughput"])
    rows += _rotation_rows(results["rotation"], results["steady"])
    return rows


def _throughput_rows(table: dict[str, list[dict[str, Any]]]) -> list[Row]:
    def rate(key: str) -> float | None:
        return median(table.get(key, []), "msg_per_s")

    def cpu(key: str) -> float | None:
        return median(table.get(key, []), "cpu_us_per_msg")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    base = "combined_1_fast"
    one, many, single = rate(base), rate("thousand"), rate("thousand_one_connection")
    shown = ratio(many, one)
    rounds = [  # runs were interleaved: the ratio within each round shows the noise
        a["msg_per_s"] / b["msg_per_s"]
        for a, b in zip(table.get("thousand", []), table.get(base, []), strict=False)
        if a.get("msg_per_s") and b.get("msg_per_s")
    ]
    spread = f" (per round {min(rounds):.2f}-{max(rounds):.2f}x)" if rounds else ""
    rows: list[Row] = [
        (
            "aggregate throughput, 1,000 streams (5 connections) / 1 stream",
            f"{_fmt(many)} vs {_fmt(one)} msg/s = {_fmt(shown, '.2f')}x{spread}; CPU "
            f"{_fmt(cpu('thousand'), '.1f')} vs {_fmt(cpu(base), '.1f')} us/msg",
            ">= 0.90x",
            None if shown is None else shown >= 0.9,
        ),
        (
            "the same, 1,000 streams on 1 connection (`streams_per_connection=1000`)",
            f"{_fmt(single)} msg/s = {_fmt(ratio(single, one), '.2f')}x; CPU "
            f"{_fmt(cpu('thousand_one_connection'), '.1f')} us/msg",
            "information",
            None,
        ),
    ]
    for mode, label in (("combined", "defaults"), ("raw", "`streams_per_connection=1`")):
        for count in (1, 16):
            fast, public = rate(f"{mode}_{count}_fast"), rate(f"{mode}_{count}_public")
            rows.append(
                (
                    f"fast / public frame reader, {count} stream(s), {label}",
                    f"{_fmt(fast)} vs {_fmt(public)} msg/s = "
                    f"{_fmt(ratio(fast, public), '.2f')}x; CPU "
                    f"{_fmt(cpu(f'{mode}_{count}_fast'), '.1f')} vs "
                    f"{_fmt(cpu(f'{mode}_{count}_public'), '.1f')} us/msg",
                    "information",
                    None,
                )
            )
    return rows


def _rotation_rows(rotation: dict[str, Any], steady: dict[str, Any]) -> list[Row]:
    done = (rotation.get("attempts") or 1) - 1
    lost = (rotation.get("jumps_seen"), rotation.get("duplicates_seen"), rotation.get("gap_calls"))
    peak = rotation.get("max_open_connections")
    return [
        (
            f"gaps / duplicates / on_gap calls across {done} rotations (4 streams x 50 msg/s)",
            " / ".join(map(str, lost)),
            "0 / 0 / 0",
            all(v == 0 for v in lost),
        ),
        (
            "extra connections during a handover; both open for",
            f"{_fmt(None if peak is None else peak - 1, 'd')}; median "
            f"{_fmt(_ms(rotation.get('overlap_median_s')))} ms, max "
            f"{_fmt(_ms(rotation.get('overlap_max_s')))} ms",
            "information",
            None,
        ),
        (
            "longest pause at a subscriber (feed period 20 ms)",
            f"{_fmt(_ms(rotation.get('max_pause_s')))} ms with rotations, "
            f"{_fmt(_ms(steady.get('max_pause_s')))} ms without (same run, same length)",
            "information",
            None,
        ),
        (
            "exchange rule violations, rotations",
            f"{len(rotation.get('violations', ['no answer']))}",
            "0",
            not rotation.get("violations", ["no answer"]),
        ),
    ]


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


NOTES = """How each figure is made (each case a fresh process, its exchange another; medians of
{repeat} runs; the throughput runs interleaved, one round after another):

- **1,000 streams** (`idle`, `deliver`): `WSManager(url)` with default options against
  `FakeExchange(rules=BINANCE_SPOT_RULES)`, streams `s0@trade` ... `s999@trade` subscribed in a
  tight loop. Threads are `threading.active_count()` of the client process (main thread
  included; the exchange is elsewhere). RSS per idle stream: VmRSS with the manager created and no
  stream, then with 1,000 streams subscribed and carried by the exchange (no message sent), divided
  by 1,000. Delivery: the exchange publishes every carried stream 2 times a second (so up to
  0.5 s of each figure is the feed's own period); the figure is the time from the return of the
  last `subscribe()` call to the first message of the last stream; then 10 s of flow
  (3 s with `--quick`) before the exchange's record of violations is read.
- **Aggregate throughput**: a raw exchange (`serve` mode) writes pre-framed
  `{{"stream", "data"}}` envelopes of trades (~170 bytes) as fast as the sockets take them, once
  every stream is carried; {total_messages:,} messages in all: 1 stream on 1 connection, or
  1,000 streams x {total_messages:,}/1,000 interleaved over 5 connections (the default 200
  streams each). Figure: messages delivered to callbacks per second, first to last delivery
  ("per round": the ratio within each round of runs, which shows the machine's noise); CPU is
  the client process's (every thread) per message. Buffers are raised so that
  nothing is dropped (with the default 10,000-message buffer a single stream sent flat out can
  overflow it: the callback thread lags behind the reader by thousands of messages at times).
- **Fast / public frame reader**: the same exchange and measure; "public" sets
  `wsmanager.net._wsclient.FAST_READER_AVAILABLE = False`, so each connection reads through
  websocket-client's own `frame_buffer` (one frame per `recv` sequence) instead of ours.
- **Rotation**: 4 trade streams at 50 msg/s each on the rule-enforcing exchange,
  `max_connection_age=0.3`, until 100 rotations (30 with `--quick`) have started, plus 1 s.
  The subscriber checks that every `t` is the previous + 1; "extra connections" is the most
  connections the exchange saw open at once, minus the one the streams need; "both open for" is
  how long each old connection outlived the opening of its successor. The pause baseline is the
  same feed for the same time without rotation (`max_connection_age=None`)."""


def report(results: dict[str, Any], meta: str) -> str:
    lines = [SECTION, "", meta, "", "| figure | measured | target | met |", "|---|---|---|---|"]
    for name, measured, target, met in figures(results):
        shown = "-" if met is None else ("yes" if met else "**NO**")
        lines.append(f"| {name} | {measured} | {target} | {shown} |")
    return "\n".join([*lines, "", NOTES.format(**results)])


def _write_section(text: str) -> None:
    path = HERE / "RESULTS.md"
    current = path.read_text()
    head, found, tail = current.partition(SECTION)
    rest = ""
    if found:  # replace our section, keep any section after it
        after = tail.find("\n## ")
        rest = tail[after:] if after >= 0 else ""
    path.write_text(head.rstrip("\n") + "\n\n" + text + "\n" + rest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    import websocket

    import wsmanager
    from wsmanager.decode import decode_json

    results = run(args.quick, args.repeat)
    meta = (
        f"Run {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{len(os.sched_getaffinity(0))} cores; Python {platform.python_version()}; "
        f"wsmanager {wsmanager.__version__}, websocket-client {websocket.__version__}, "
        f"decoder {decode_json.__name__.removeprefix('decode_json_')}"
        f"{' (--quick)' if args.quick else ''}."
    )
    text = report(results, meta)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "streams.json").write_text(json.dumps(results, indent=2))
    if args.write_results:
        _write_section(text)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "exchange":
        exchange_main(float(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve_main(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) > 1 and sys.argv[1] == "case":
        name, *rest = sys.argv[2:]
        values = [a if not a[:1].isdigit() else float(a) if "." in a else int(a) for a in rest]
        print(json.dumps(CASES[name](*values)))
    else:
        raise SystemExit(main())
