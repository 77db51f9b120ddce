"""Futures depth benchmark: false gaps and book correctness over a long pu-chained stream.

    .venv/bin/python bench/futures.py [--events 100000] [--check-every 1000]

Against the bundled fake exchange in its USD-M mode (``FakeExchange(market="usdm")``: depth
events chained by ``pu``, ``U`` jumping past the last ``u`` + 1 as on the real exchange), one
routed manager (``WSManager(endpoint="usdm")``) carries ``btcusdt@depth@100ms`` to

- a subscriber counting what ``on_gap`` reports (the target: zero, no false gap), and
- ``manager.order_book("BTCUSDT")`` (futures procedure, ``/fapi/v1/depth`` snapshots), compared
  with the exchange's true book every ``--check-every`` events (the target: equal every time).

The baseline, measured in the same run on the same events: the spot rule (the next ``U`` must
be the last ``u`` + 1), which is what the manager applied to futures depth before version 3; its
gap count is what a futures user saw. Nothing here is asserted; the test suite never times
anything.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from wsmanager import Gap, WSManager
from wsmanager.core.sequence import Jump, Sequencer, SequenceRule
from wsmanager.testing import FakeExchange

STREAM = "btcusdt@depth@100ms"


def spot_rule_gaps(events: list[dict[str, Any]]) -> int:
    """Gaps the spot rule reports on ``events`` (``pu`` ignored): the old behaviour."""
    sequencer = Sequencer(SequenceRule.DEPTH)
    gaps = 0
    for event in events:
        verdict = sequencer.check({k: v for k, v in event.items() if k != "pu"})
        gaps += isinstance(verdict, Jump)
    return gaps


def run(events: int, check_every: int) -> dict[str, Any]:
    gaps: list[Gap] = []
    received: list[dict[str, Any]] = []
    done = threading.Condition()
    checks = mismatches = 0
    with (
        FakeExchange(market="usdm", seed=11) as exchange,
        WSManager(
            url=exchange.root_url,
            endpoint="usdm",
            rest_url=exchange.rest_url,
            connection_budget=None,
        ) as manager,
    ):
        manager.on_gap(gaps.append)

        def record(event: Any) -> None:
            with done:
                received.append(event)
                done.notify_all()

        manager.subscribe(STREAM, record)
        book = manager.order_book("BTCUSDT", limit=1000, min_snapshot_interval=0.0)
        if not exchange.wait_for_open(STREAM, 1, timeout=10):
            raise RuntimeError("the depth stream never opened")
        started = time.perf_counter()
        for number in range(1, events + 1):
            exchange.publish(STREAM)
            if number == 1 and not book.wait_synced(10):
                raise RuntimeError("the book never synced")
            if number % check_every == 0 or number == events:
                with done:
                    done.wait_for(lambda n=number: len(received) >= n, 30)
                true = exchange.book("BTCUSDT")
                deadline = time.monotonic() + 10
                while book.last_update_id != true.last_update_id and time.monotonic() < deadline:
                    time.sleep(0.001)
                view = book.view()
                checks += 1
                mismatches += view.bids != true.bids() or view.asks != true.asks()
        elapsed = time.perf_counter() - started
        stats = book.stats()
        paths = {r.path for r in exchange.rest_requests()}
    return {
        "events": events,
        "received": len(received),
        "gaps": len(gaps),
        "spot_rule_gaps": spot_rule_gaps(received),
        "checks": checks,
        "mismatches": mismatches,
        "resyncs": stats.resyncs,
        "rest_paths": sorted(paths),
        "seconds": elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--check-every", type=int, default=1000)
    args = parser.parse_args(argv)
    result = run(args.events, args.check_every)
    rate = result["received"] / result["seconds"]
    print(
        f"futures depth: {result['events']:,} events published, {result['received']:,} "
        f"delivered in {result['seconds']:.1f} s ({rate:,.0f}/s end to end, publishing included)"
    )
    print("| figure | measured | baseline (spot rule, same events) | target | met |")
    print("|---|---|---|---|---|")
    print(
        f"| gaps reported (false gaps) | {result['gaps']} | {result['spot_rule_gaps']:,} | 0 | "
        f"{'yes' if result['gaps'] == 0 else 'NO'} |"
    )
    ok = result["mismatches"] == 0
    print(
        f"| book equal to the true book | {result['checks'] - result['mismatches']} of "
        f"{result['checks']} checks | - | every check | {'yes' if ok else 'NO'} |"
    )
    print(f"| resyncs | {result['resyncs']} | - | 0 | {'yes' if not result['resyncs'] else 'NO'} |")
    print(f"REST paths asked: {', '.join(result['rest_paths'])}")
    return 0 if result["gaps"] == 0 and ok else 1


if __name__ == "__main__":
    sys.exit(main())
