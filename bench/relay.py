"""The relay's benchmark: exchange -> relay -> Redis -> RelayClient, against a direct WSManager.

    .venv/bin/python bench/relay.py [--quick] [--repeat N]

Every party runs in a process of its own: bench/exchange.py (the raw exchange), a real
redis-server (AOF on, ``appendfsync everysec``, as in production), ``python -m wsmanager relay``
and a relay client ("a consumer on another machine"). The direct baseline is bench/cases.py's
wsmanager client on the same exchange, in the same run. Figures: end-to-end throughput of a
burst (first to last message at the client), latency p50/p99 at 2,000 msg/s (exchange send to
callback, one monotonic clock), and the relay process' CPU at 10,000 msg/s. Nothing is
asserted; the test suite never times.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the consumer process ----------------------------------------------------------------------


def consume(mode: str, redis_url: str, prefix: str, stream: str, count: int) -> None:
    """Subscribe from the start of ``stream``, print "ready", then one JSON line of results."""
    from wsmanager.relay import RelayClient

    done = threading.Event()
    stamps: list[float] = []  # first and last message
    latencies: list[int] = []
    received = 0

    def on_message(message: Any) -> None:
        nonlocal received
        now = time.perf_counter()
        received += 1
        if mode == "latency":
            latencies.append(time.monotonic_ns() - message["E"])
        if received == 1 or received == count:
            stamps.append(now)
        if received == count:
            done.set()

    with RelayClient(redis_url, key_prefix=prefix, start="0") as client:
        client.subscribe(stream, on_message)
        print("ready", flush=True)
        finished = done.wait(300)
        metrics = client.get_metrics()
    result: dict[str, Any] = {"finished": finished, "received": metrics.entries_received}
    if finished and mode == "throughput":
        result["msg_per_s"] = (count - 1) / (stamps[-1] - stamps[0])
    elif finished:
        samples = sorted(latencies[count // 10 :])  # skip the warm-up tenth
        result["p50_us"] = samples[len(samples) // 2] / 1000
        result["p99_us"] = samples[int(len(samples) * 0.99)] / 1000
    print(json.dumps(result), flush=True)


# -- the relay process ---------------------------------------------------------------------------


def relay(redis_url: str, exchange_url: str, prefix: str, stream: str, count: int) -> None:
    """A relay as ``wsmanager relay`` runs it, with buffers that hold a whole burst (the bench
    exchange sends faster than any real one); runs until SIGTERM."""
    import signal

    from wsmanager.relay import Relay

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Relay(
        redis_url,
        [stream],
        url=exchange_url,
        key_prefix=prefix,
        maxlen=count + 10_000,
        buffer_size=count,
        manager_options={"max_buffered_messages": count},
    ):
        stop.wait()


# -- orchestration -------------------------------------------------------------------------------


class Run:
    """One relay process and one consumer process for one stream, under a key prefix of their
    own (the bench exchange numbers every connection from 0)."""

    def __init__(self, redis_url: str, exchange_port: int, stream: str, count: int, mode: str):
        self.prefix = f"bench{time.monotonic_ns()}:"
        self.consumer = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "_consume",
                mode,
                redis_url,
                self.prefix,
                stream,
                str(count),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.consumer.stdout is not None
        assert self.consumer.stdout.readline().strip() == "ready"
        exchange_url = f"ws://127.0.0.1:{exchange_port}/ws/"
        self.relay = subprocess.Popen(
            [
                *(sys.executable, __file__, "_relay", redis_url, exchange_url),
                *(self.prefix, stream, str(count)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def result(self) -> dict[str, Any]:
        assert self.consumer.stdout is not None
        line = self.consumer.stdout.readline()
        self.consumer.wait(30)
        self.relay.terminate()
        self.relay.wait(30)
        return dict(json.loads(line)) if line else {"error": "no result"}


def _direct(case: str, port: int, *args: object) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(HERE / "cases.py"), case, "wsmanager", str(port), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    try:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}


def _relay_alone(redis_url: str, port: int, count: int) -> dict[str, Any]:
    """The relay with no consumer: entries per second into Redis (its length polled)."""
    import redis

    stream = f"burst-{count}@trade"
    prefix = f"alone{time.monotonic_ns()}:"
    relay = subprocess.Popen(
        [
            *(sys.executable, __file__, "_relay", redis_url, f"ws://127.0.0.1:{port}/ws/"),
            *(prefix, stream, str(count)),
        ],
        stdout=subprocess.DEVNULL,
    )
    admin = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 120
        while admin.xlen(prefix + stream) < 1 and time.monotonic() < deadline:
            time.sleep(0.002)
        started = time.monotonic()
        while admin.xlen(prefix + stream) < count and time.monotonic() < deadline:
            time.sleep(0.002)
        return {"msg_per_s": (count - 1) / (time.monotonic() - started)}
    finally:
        admin.close()
        relay.terminate()
        relay.wait(30)


def _relay_cpu(redis_url: str, port: int, rate: int, seconds: float) -> dict[str, Any]:
    """CPU of the relay and consumer processes while ``rate`` msg/s flow, over the middle 80 %
    of the run (the stream's length in Redis tells where the run is)."""
    import redis

    count = int(rate * seconds)
    stream = f"rate-{rate}-{count}@trade"
    run = Run(redis_url, port, stream, count, "throughput")
    admin = redis.Redis.from_url(redis_url)
    key = run.prefix + stream
    try:
        while admin.xlen(key) < count * 0.1:
            time.sleep(0.01)
        relay0, consumer0 = _cpu_seconds(run.relay.pid), _cpu_seconds(run.consumer.pid)
        t0 = time.monotonic()
        while admin.xlen(key) < count * 0.9:
            time.sleep(0.01)
        relay1, consumer1 = _cpu_seconds(run.relay.pid), _cpu_seconds(run.consumer.pid)
        t1 = time.monotonic()
    finally:
        admin.close()
    run.result()
    return {
        "rate": rate,
        "relay_cpu_share": (relay1 - relay0) / (t1 - t0),
        "consumer_cpu_share": (consumer1 - consumer0) / (t1 - t0),
    }


_DIRECT_CONSUMER = """
import sys, threading
from wsmanager import WSManager
count, seen, done = int(sys.argv[2]), [0], threading.Event()
def on_message(message):
    seen[0] += 1
    if seen[0] == 1:
        print("first", flush=True)
    if seen[0] == count:
        done.set()
with WSManager(url=sys.argv[1]) as manager:
    manager.subscribe(f"rate-{sys.argv[3]}-{count}@trade", on_message)
    done.wait(300)
"""


def _direct_cpu(port: int, rate: int, seconds: float) -> float:
    """CPU share of a plain WSManager subscriber at ``rate`` msg/s (middle 80 % of the run)."""
    count = int(rate * seconds)
    process = subprocess.Popen(
        [
            *(sys.executable, "-c", _DIRECT_CONSUMER),
            *(f"ws://127.0.0.1:{port}/ws/", str(count), str(rate)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "first"
    time.sleep(seconds * 0.1)  # (a benchmark's measuring window, not a wait for an event)
    cpu0, t0 = _cpu_seconds(process.pid), time.monotonic()
    time.sleep(seconds * 0.8)
    cpu1, t1 = _cpu_seconds(process.pid), time.monotonic()
    process.wait(60)
    return (cpu1 - cpu0) / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure")
    args = parser.parse_args()
    from wsmanager.relay.redis_server import RedisServer

    burst = 20_000 if args.quick else 100_000
    latency_count = 4_000 if args.quick else 10_000
    port = _free_port()
    exchange = subprocess.Popen(
        [sys.executable, str(HERE / "exchange.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    assert exchange.stdout is not None and exchange.stdout.readline().strip() == "ready"
    results: dict[str, Any] = {}
    try:
        with RedisServer(appendfsync="everysec") as server:
            direct = [_direct("throughput", port, 1, burst) for _ in range(args.repeat)]
            relayed = []
            for _ in range(args.repeat):
                run = Run(server.url, port, f"burst-{burst}@trade", burst, "throughput")
                relayed.append(run.result())
            alone = [_relay_alone(server.url, port, burst) for _ in range(args.repeat)]
            results["throughput"] = {
                "direct_msg_per_s": statistics.median(r.get("msg_per_s", 0.0) for r in direct),
                "relay_msg_per_s": statistics.median(r.get("msg_per_s", 0.0) for r in relayed),
                "relay_alone_msg_per_s": statistics.median(r["msg_per_s"] for r in alone),
                "runs": {"direct": direct, "relay": relayed, "relay_alone": alone},
            }
            print(f"throughput: {results['throughput']}", file=sys.stderr)
            results["latency_2000"] = {
                "direct": _direct("latency", port, 2000, latency_count),
                "relay": Run(
                    server.url, port, f"rate-2000-{latency_count}@trade", latency_count, "latency"
                ).result(),
            }
            print(f"latency: {results['latency_2000']}", file=sys.stderr)
            seconds = 4.0 if args.quick else 8.0
            results["cpu_10000"] = _relay_cpu(server.url, port, 10_000, seconds)
            results["cpu_10000"]["direct_cpu_share"] = _direct_cpu(port, 10_000, seconds)
            print(f"cpu: {results['cpu_10000']}", file=sys.stderr)
    finally:
        exchange.terminate()
        exchange.wait(10)
    print(report(results))


def report(results: dict[str, Any]) -> str:
    through = results["throughput"]
    direct, relay = through["direct_msg_per_s"], through["relay_msg_per_s"]
    latency = results["latency_2000"]
    cpu = results["cpu_10000"]
    ratio = relay / direct if direct else float("nan")
    lines = [
        "| path | msg/s (burst) | ratio | p50 us @2k/s | p99 us @2k/s |",
        "|---|---|---|---|---|",
        f"| direct WSManager | {direct:,.0f} | 1.00x | {latency['direct'].get('p50_us', 0):,.0f} "
        f"| {latency['direct'].get('p99_us', 0):,.0f} |",
        f"| exchange -> relay -> Redis -> RelayClient | {relay:,.0f} | {ratio:.2f}x | "
        f"{latency['relay'].get('p50_us', 0):,.0f} | {latency['relay'].get('p99_us', 0):,.0f} |",
        "",
        f"The relay process alone (no consumer running): {through['relay_alone_msg_per_s']:,.0f} "
        f"msg/s into Redis ({through['relay_alone_msg_per_s'] / direct:.2f}x direct).",
        "",
        f"CPU at {cpu['rate']:,} msg/s, share of one core: relay process "
        f"{cpu['relay_cpu_share']:.0%}, its consumer {cpu['consumer_cpu_share']:.0%}; "
        f"a direct WSManager subscriber {cpu['direct_cpu_share']:.0%} "
        f"(relay = {cpu['relay_cpu_share'] / cpu['direct_cpu_share']:.1f}x direct).",
        "",
        "| target | measured | met |",
        "|---|---|---|",
        f"| throughput >= 0.5x direct | {ratio:.2f}x | {'yes' if ratio >= 0.5 else 'NO'} |",
    ]
    p99 = latency["relay"].get("p99_us")
    met = p99 is not None and p99 <= 5000
    shown = f"{p99 / 1000:.2f} ms" if p99 is not None else "n/a"
    lines.append(f"| p99 <= 5 ms at 2,000 msg/s | {shown} | {'yes' if met else 'NO'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_consume":
        consume(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "_relay":
        relay(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    else:
        main()
