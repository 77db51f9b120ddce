"""Many streams per connection (issue 11) and what the private frame reader buys (issue 10).

    python bench/streams.py [--quick] [--repeat N] [--write-results]

Every figure comes from a fresh process (``python bench/stream_cases.py NAME ARGS...``, one JSON
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
import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from common import median, run_case

HERE = Path(__file__).resolve().parent
SECTION = "## Many streams per connection (`bench/streams.py`)"


# -- the run: cases in fresh processes, figures against targets ----------------------------------


def _case(*args: object) -> dict[str, Any]:
    return run_case(HERE / "stream_cases.py", *args, timeout=900)


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
    raise SystemExit(main())
