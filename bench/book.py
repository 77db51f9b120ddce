"""Order book benchmark: applying depth events against decoding them, memory, time to sync.

    .venv/bin/python bench/book.py [--levels 5000] [--events 3000] [--changes 20]

1. Depth events applied per second to a book of ``--levels`` levels per side, through
   ``DepthSync`` alone and through ``OrderBook`` (its lock, id checks, callbacks bookkeeping),
   as a ratio to ``json.loads`` of the same events in the same run. Target: applying <= 3x
   decoding.
2. Memory of such a book (tracemalloc: the levels, the price memo), after loading the snapshot
   and after the events.
3. Time from ``OrderBook(...)`` to synced on loopback, against the bundled fake exchange (a real
   WebSocket stream and a real HTTP snapshot), median of ``--syncs`` runs; skipped when the
   installed fake exchange has no order books.

Nothing here is asserted; the test suite never times anything.
"""

from __future__ import annotations

import argparse
import bisect
import gc
import json
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from functools import partial
from typing import Any

from wsmanager.book import OrderBook
from wsmanager.book.sync import DepthSnapshot, DepthSync


def make_market(
    levels: int, events: int, changes: int, *, uniform: bool = False, seed: int = 7
) -> tuple[Any, list[str]]:
    """A snapshot of ``levels`` per side (ticks of 0.01) and ``events`` JSON diffs of
    ``changes`` levels per side each: 70 % new quantities, 15 % removals, 15 % new levels (the
    size stays put). Where: like a real market, near the top of the book (rank ~ exponential,
    mean 30 levels; new levels ~ 60 ticks from the best), or, with ``uniform``, anywhere."""
    rng = random.Random(seed)

    def qty() -> str:
        return f"{rng.uniform(0.0001, 5):.8f}"

    def rank(size: int) -> int:
        if uniform:
            return rng.randrange(size)
        return min(int(rng.expovariate(1 / 30)), size - 1)

    # Each side: keys best first (key = direction * tick; a tick is 0.01), tick -> quantity.
    def spaced(start: int) -> list[int]:  # levels 1 to 3 ticks apart: room for new ones
        keys = [start]
        while len(keys) < levels:
            keys.append(keys[-1] + rng.randint(1, 3))
        return keys

    sides = {"b": (spaced(-3_000_000), -1), "a": (spaced(3_000_001), 1)}
    books = {key: {direction * k: qty() for k in keys} for key, (keys, direction) in sides.items()}

    def price(tick: int) -> str:
        return f"{tick / 100:.8f}"

    snapshot = {
        "lastUpdateId": 1_000_000,
        "bids": [[price(-k), books["b"][-k]] for k in sides["b"][0]],
        "asks": [[price(k), books["a"][k]] for k in sides["a"][0]],
    }
    update_id = 1_000_000
    encoded = []
    for _ in range(events):
        diff: dict[str, list[list[str]]] = {}
        for key, (keys, direction) in sides.items():
            book = books[key]
            out: list[list[str]] = []
            used: set[int] = set()  # one change per price per event, as the exchange sends
            while len(out) < changes:
                roll = rng.random()
                for _ in range(1000):  # a price not used yet in this event, same kind
                    if roll < 0.85:
                        index = rank(len(keys))
                        tick = direction * keys[index]
                    else:
                        away = (rng.randrange(1, 4 * levels) if uniform
                                else int(rng.expovariate(1 / 60)) + 1)  # fmt: skip
                        tick = direction * (keys[0] + away)
                        if tick in book:
                            continue
                    if tick not in used:
                        break
                if tick in used:
                    continue
                if roll >= 0.85 and tick in book:  # no free price near the top: a change
                    roll = 0.0
                if roll < 0.70:
                    book[tick] = quantity = qty()
                elif roll < 0.85:
                    del keys[index]
                    del book[tick]
                    quantity = "0.00000000"
                else:
                    book[tick] = quantity = qty()
                    bisect.insort(keys, direction * tick)
                used.add(tick)
                out.append([price(tick), quantity])
            diff[key] = out
        first = update_id + 1
        update_id += rng.randint(1, 5)
        event = {"e": "depthUpdate", "E": 1_700_000_000_000, "s": "BTCUSDT",
                 "U": first, "u": update_id, **diff}  # fmt: skip
        encoded.append(json.dumps(event, separators=(",", ":")))
    return snapshot, encoded


def bench_apply(
    levels: int, events: int, changes: int, runs: int, uniform: bool = False
) -> dict[str, Any]:
    """Decode each event with ``json.loads`` and apply it, timing both steps event by event,
    so both see the same machine (it is shared and noisy); ``runs`` rounds, median ratio."""
    snapshot, encoded = make_market(levels, events, changes, uniform=uniform)
    first = json.loads(encoded[0])
    parsed = DepthSnapshot.parse(snapshot)
    loads = json.loads
    clock = time.perf_counter_ns

    def synced() -> DepthSync:
        sync = DepthSync()
        sync.on_event(first)
        sync.on_snapshot(parsed)
        return sync

    def round_with(apply: Callable[[Any], object], check: Callable[[], object]) -> tuple[int, int]:
        decoding = applying = 0
        gc.collect()
        for raw in encoded[1:]:
            started = clock()
            event = loads(raw)
            decoded = clock()
            apply(event)
            applying += clock() - decoded
            decoding += decoded - started
        check()
        return decoding, applying

    last_id = json.loads(encoded[-1])["u"]
    ratios: dict[str, list[float]] = {"depthsync": [], "orderbook": []}
    rates: dict[str, list[float]] = {"decode": [], "depthsync": [], "orderbook": []}
    count = len(encoded) - 1
    for _ in range(runs):
        sync = synced()
        decoding, applying = round_with(sync.on_event, partial(_check, sync, last_id))
        ratios["depthsync"].append(applying / decoding)
        rates["depthsync"].append(count / applying * 1e9)
        rates["decode"].append(count / decoding * 1e9)
        book = OrderBook(_no_stream, "BTCUSDT", rest_url="http://127.0.0.1:9")
        book._sync = synced()  # skip the REST part: this measures applying only
        book.on_update(lambda b: None)
        decoding, applying = round_with(book._on_event, partial(_check, book._sync, last_id))
        book.close()
        ratios["orderbook"].append(applying / decoding)
        rates["orderbook"].append(count / applying * 1e9)
        rates["decode"].append(count / decoding * 1e9)
    return {
        "levels_per_side": levels,
        "events": count,
        "changes_per_event": 2 * changes,
        "model": "uniform" if uniform else "top-heavy",
        "decode_events_per_s": statistics.median(rates["decode"]),
        "depthsync_events_per_s": statistics.median(rates["depthsync"]),
        "orderbook_events_per_s": statistics.median(rates["orderbook"]),
        "depthsync_over_decode": statistics.median(ratios["depthsync"]),
        "orderbook_over_decode": statistics.median(ratios["orderbook"]),
        "orderbook_over_decode_all": sorted(round(r, 2) for r in ratios["orderbook"]),
    }


def _check(sync: DepthSync, last_id: int) -> None:
    if not (sync.synced and sync.last_update_id == last_id):
        raise SystemExit("the benchmark book lost sync: a bug")


def _no_stream(*args: Any, **kwargs: Any) -> Callable[[], None]:
    return lambda: None


def bench_memory(levels: int, events: int, changes: int) -> dict[str, Any]:
    """What the book holds (tracemalloc), everything decoded while tracing: the snapshot's
    strings the book keeps are counted, the documents it drops are not."""
    snapshot, encoded = make_market(levels, events, changes)
    snapshot_text = json.dumps(snapshot)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    sync = DepthSync()
    sync.on_event(json.loads(encoded[0]))
    sync.on_snapshot(DepthSnapshot.parse(json.loads(snapshot_text)))
    gc.collect()
    loaded = tracemalloc.get_traced_memory()[0] - before
    for raw in encoded[1:]:
        sync.on_event(json.loads(raw))
    gc.collect()
    after_events = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    held = len(sync.levels.bids) + len(sync.levels.asks)
    return {
        "levels": (len(sync.levels.bids), len(sync.levels.asks)),
        "bytes_after_snapshot": loaded,
        "bytes_after_events": after_events,
        "bytes_per_level": after_events / held,
    }


def bench_time_to_sync(runs: int, rate: float) -> dict[str, Any]:
    """From ``OrderBook(...)`` to synced: a real stream (the fake exchange publishing its
    depth diffs ``rate`` times a second) and a real HTTP snapshot, on loopback."""
    if runs < 1:
        return {"skipped": "--syncs 0"}
    from wsmanager import WSManager
    from wsmanager.testing import FakeExchange

    if not hasattr(FakeExchange, "rest_url"):
        return {"skipped": "the installed fake exchange has no order books"}
    times = []
    with FakeExchange(rate=rate, seed=1) as exchange:
        for _ in range(runs):
            with WSManager(url=exchange.url) as manager:
                started = time.perf_counter()
                book = OrderBook(manager.subscribe, "BTCUSDT", rest_url=exchange.rest_url)
                synced = book.wait_synced(30.0)
                elapsed = time.perf_counter() - started
                book.close()
            if synced:
                times.append(elapsed)
    if not times:
        return {"skipped": "never synced"}
    return {"rate": rate, "runs": len(times), "median_s": statistics.median(times),
            "min_s": min(times), "max_s": max(times)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", type=int, default=5000, help="levels per side")
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--changes", type=int, default=20, help="levels per side per event")
    parser.add_argument("--runs", type=int, default=7, help="rounds (median ratio)")
    parser.add_argument("--uniform", action="store_true", help="changes anywhere in the book")
    parser.add_argument("--syncs", type=int, default=10, help="time-to-sync samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result = {
        "python": sys.version.split()[0],
        "apply": bench_apply(args.levels, args.events, args.changes, args.runs, args.uniform),
        "memory": bench_memory(args.levels, args.events, args.changes),
        "time_to_sync": [bench_time_to_sync(args.syncs, rate) for rate in (10.0, 1000.0)],
    }
    if args.json:
        print(json.dumps(result))
        return 0
    apply, memory, sync = result["apply"], result["memory"], result["time_to_sync"]
    print(f"book of {apply['levels_per_side']} levels per side, {apply['events']} events of "
          f"{apply['changes_per_event']} level changes, {apply['model']} "
          f"(Python {result['python']})")  # fmt: skip
    print(f"  json.loads        {apply['decode_events_per_s']:>10,.0f} events/s  baseline")
    print(f"  DepthSync apply   {apply['depthsync_events_per_s']:>10,.0f} events/s  "
          f"{apply['depthsync_over_decode']:.2f}x decoding")  # fmt: skip
    print(f"  OrderBook apply   {apply['orderbook_events_per_s']:>10,.0f} events/s  "
          f"{apply['orderbook_over_decode']:.2f}x decoding (target <= 3x: "
          f"{'met' if apply['orderbook_over_decode'] <= 3 else 'NOT met'}; rounds: "
          f"{apply['orderbook_over_decode_all']})")  # fmt: skip
    print(f"memory: {memory['bytes_after_snapshot'] / 2**20:.2f} MiB after the snapshot, "
          f"{memory['bytes_after_events'] / 2**20:.2f} MiB after the events "
          f"({memory['bytes_per_level']:.0f} B/level, {memory['levels']} levels)")  # fmt: skip
    for each in sync:
        if "skipped" in each:
            print(f"time to sync: skipped ({each['skipped']})")
            continue
        print(f"time to sync on loopback, diffs at {each['rate']:g}/s: median "
              f"{each['median_s'] * 1000:.0f} ms, min {each['min_s'] * 1000:.0f} ms, "
              f"max {each['max_s'] * 1000:.0f} ms ({each['runs']} runs)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
