"""The benchmark suite: wsmanager against its peers, side by side, as ratios from one run.

    make bench            # creates .venv-bench (with the Binance SDKs), runs this, writes
                          # bench/results/latest.json and bench/RESULTS.md

Each measurement runs in a fresh process against bench/exchange.py, which runs in a process of
its own. Ratios are against websocket-client's WebSocketApp with default settings, measured in
the same run (the machines are noisy). Nothing here is asserted; the test suite never times.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from common import median, run_case

HERE = Path(__file__).resolve().parent
BASELINE = "wsapp"
LABELS = {
    "wsmanager": "wsmanager (default options)",
    "wsmanager-buffered": "wsmanager, buffers raised to 1e6 (extra row)",
    "wsmanager-public": "wsmanager on websocket-client's public frame reader (defaults)",
    "wsapp": "websocket-client WebSocketApp (defaults)",
    "websockets-sync": "websockets sync client",
    "websockets-asyncio": "websockets asyncio client",
    "binance-connector": "binance-connector stream client",
    "python-binance": "python-binance ReconnectingWebsocket (queue 1e6)",
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _case(*args: object) -> dict[str, Any]:
    return run_case(HERE / "cases.py", *args)


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def run(port: int, repeat: int, quick: bool) -> dict[str, Any]:
    clients = [
        c for c in LABELS if c not in ("binance-connector", "python-binance") or _installed(c)
    ]
    per_stream = 20_000 if quick else 100_000
    results: dict[str, Any] = {}

    def throughput(name: str, streams: int, count: int, who: list[str]) -> None:
        table = {}
        for client in who:
            runs = [_case("throughput", client, port, streams, count) for _ in range(repeat)]
            table[client] = {
                "msg_per_s": median(runs, "msg_per_s"),
                "errors": [r["error"] for r in runs if "error" in r],
            }
            print(
                f"  {name:<18} {client:<20} {table[client]['msg_per_s'] or 0:>10.0f} msg/s",
                file=sys.stderr,
            )
        results[name] = table

    throughput("one_stream", 1, per_stream, clients)
    throughput("sixteen_streams", 16, per_stream // 5, clients)

    results["latency_2000"] = {}
    for client in clients:
        result = _case("latency", client, port, 2000, 4000 if quick else 10_000)
        results["latency_2000"][client] = result
        print(f"  latency            {client:<20} {result}", file=sys.stderr)

    results["fan_out"] = {}
    for subscribers in (1, 10, 100):
        runs = [
            _case("throughput", "wsmanager", port, 1, per_stream // 2, subscribers)
            for _ in range(repeat)
        ]
        results["fan_out"][subscribers] = {"msg_per_s": median(runs, "msg_per_s")}
        print(
            f"  fan-out {subscribers:>3}        {results['fan_out'][subscribers]}", file=sys.stderr
        )

    results["idle_rss_200"] = {c: _case("idle_rss", c, port, 200) for c in ("wsmanager", "wsapp")}
    print(f"  idle RSS           {results['idle_rss_200']}", file=sys.stderr)
    results["recovery"] = {str(d): _case("recovery", "wsmanager", port, d) for d in (1.0, 0.1)}
    print(f"  recovery           {results['recovery']}", file=sys.stderr)
    return results


def _ratio(value: float | None, base: float | None, inverse: bool = False) -> str:
    if not value or not base:
        return "n/a"
    return f"{(base / value) if inverse else (value / base):.2f}x"


def report(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        f"Run {meta['date']} on {meta['machine']}; Python {meta['python']}; "
        f"{', '.join(f'{k} {v}' for k, v in meta['versions'].items())}.",
        "",
    ]
    lines += [
        "| client | 1 stream msg/s | ratio | 16 streams msg/s | ratio | p50 us @2k/s | "
        "p99 us @2k/s |",
        "|---|---|---|---|---|---|---|",
    ]
    one, sixteen, lat = results["one_stream"], results["sixteen_streams"], results["latency_2000"]
    for client in one:
        a, b = one[client]["msg_per_s"], sixteen.get(client, {}).get("msg_per_s")
        latency = lat.get(client, {})
        p50, p99 = latency.get("p50_us", float("nan")), latency.get("p99_us", float("nan"))
        lines.append(
            f"| {LABELS[client]} | {a or 0:,.0f} | {_ratio(a, one[BASELINE]['msg_per_s'])} | "
            f"{b or 0:,.0f} | {_ratio(b, sixteen[BASELINE]['msg_per_s'])} | "
            f"{p50:,.0f} | {p99:,.0f} |"
        )
    ours_one, ours_16 = one["wsmanager"]["msg_per_s"], sixteen["wsmanager"]["msg_per_s"]
    fan = results["fan_out"]
    rss = results["idle_rss_200"]
    lines += ["", "| target | measured | ratio | met |", "|---|---|---|---|"]

    def target(
        name: str, measured: str, ratio: float | None, goal: float, below: bool = False
    ) -> None:
        met = ratio is not None and (ratio <= goal if below else ratio >= goal)
        shown = "n/a" if ratio is None else f"{ratio:.2f}"
        lines.append(f"| {name} | {measured} | {shown} | {'yes' if met else 'NO'} |")

    def vs(client: str, table: dict[str, Any], ours: float | None) -> float | None:
        other = table.get(client, {}).get("msg_per_s")
        return ours / other if ours and other else None

    target(
        "1 stream >= 3x WebSocketApp",
        f"{ours_one or 0:,.0f} msg/s",
        vs("wsapp", one, ours_one),
        3.0,
    )
    target("1 stream >= 3x binance-connector", "", vs("binance-connector", one, ours_one), 3.0)
    target("1 stream >= 3x python-binance", "", vs("python-binance", one, ours_one), 3.0)
    target("1 stream >= 1.0x websockets sync", "", vs("websockets-sync", one, ours_one), 1.0)
    target(
        "16 streams >= 0.8x websockets asyncio",
        f"{ours_16 or 0:,.0f} msg/s",
        vs("websockets-asyncio", sixteen, ours_16),
        0.8,
    )
    p99 = lat.get("wsmanager", {}).get("p99_us")
    target(
        "p99 <= 2 ms at 2 000 msg/s (ms)",
        f"{(p99 or 0) / 1000:.2f} ms",
        (p99 or 0) / 1000 if p99 else None,
        2.0,
        below=True,
    )
    one_sub, hundred = (
        fan["1"]["msg_per_s"] if "1" in fan else fan[1]["msg_per_s"],
        (fan["100"]["msg_per_s"] if "100" in fan else fan[100]["msg_per_s"]),
    )
    target(
        "100 subscribers cost <= 1.5x one",
        f"{hundred or 0:,.0f} vs {one_sub or 0:,.0f} msg/s",
        (one_sub / hundred) if one_sub and hundred else None,
        1.5,
        below=True,
    )
    kib = rss["wsmanager"].get("kib_per_stream")
    target(
        "<= 64 KB RSS per idle stream (KiB)",
        f"{kib or 0:.1f} KiB ({rss['wsmanager'].get('threads')} threads)",
        kib,
        64.0,
        below=True,
    )
    public_one = one.get("wsmanager-public", {}).get("msg_per_s")
    public_16 = sixteen.get("wsmanager-public", {}).get("msg_per_s")
    lines += [
        "",
        "What the private frame reader buys (wsmanager / wsmanager on websocket-client's public "
        f"reader): {_ratio(ours_one, public_one)} with 1 stream, "
        f"{_ratio(ours_16, public_16)} with 16.",
        f"Idle RSS per stream at 200 streams: wsmanager {kib or 0:.1f} KiB, "
        f"WebSocketApp {rss['wsapp'].get('kib_per_stream', 0):.1f} KiB.",
        "Time from a dropped connection to data again (median of 5): "
        + ", ".join(
            f"base_retry_delay {d} s: {r.get('median_s', float('nan')):.3f} s"
            for d, r in results["recovery"].items()
        )
        + ".",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per throughput figure")
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument("--write-results", action="store_true", help="write bench/RESULTS.md")
    args = parser.parse_args()
    port = _free_port()
    (HERE / "results").mkdir(exist_ok=True)
    # The exchange's asyncio warnings (writes to clients that have gone) go to a log, not here.
    exchange_log = (HERE / "results" / "exchange.log").open("w")
    exchange = subprocess.Popen(
        [sys.executable, str(HERE / "exchange.py"), str(port)],
        stdout=subprocess.PIPE,
        stderr=exchange_log,
        text=True,
    )
    try:
        assert exchange.stdout is not None and exchange.stdout.readline().strip() == "ready"
        results = run(port, args.repeat, args.quick)
    finally:
        exchange.terminate()
        exchange.wait(10)
        exchange_log.close()
    versions = {
        name: importlib.metadata.version(name)
        for name in (
            "wsmanager",
            "websocket-client",
            "websockets",
            "orjson",
            "binance-connector",
            "python-binance",
        )
        if _installed(name)
    }
    meta = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "versions": versions,
    }
    text = report(json.loads(json.dumps(results)), meta)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "latest.json").write_text(json.dumps({"meta": meta, **results}, indent=2))
    if args.write_results:
        path = HERE / "RESULTS.md"
        current = path.read_text() if path.exists() else ""
        at = current.find("\n## ")  # sections written by other programs (bench/streams.py)
        kept = current[at:] if at >= 0 else ""
        path.write_text(
            "# Benchmark results\n\nWritten by `make bench` (`bench/run.py --write-results`).\n\n"
            + text
            + "\n"
            + kept
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
