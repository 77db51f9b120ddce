"""What history costs: requests and time for a day of candles, conversion speed for a day of
aggregate trades, and the memory of ``history_frame``.

Every case runs against the fake exchange's past on loopback (``FakeExchange(history=...)``):
its archive and REST API, default manager options (``cache_dir`` a fresh temporary directory).

1. A day of 1-minute candles (1,440) from a **cold cache**: archive requests per archive day
   (target <= 2) and seconds (target <= 2 s), against the same day from REST only
   (``archive_url=None``, the baseline) and from the warm cache. The fake's own files are made
   before timing (a first load with ``cache_dir=None``), so the figure is the client's.
2. A day of aggregate trades (``--trades`` rows, default 1,728,000: one every 50 ms) converted
   from the archive's CSV into stream messages, in rows/s (target >= 500 k/s), against a baseline
   that only splits the same lines (``line.split(",")``, no messages built), measured in the same
   run; then the same day through ``history()`` from the warm cache, end to end.
3. ``history_frame`` of ``--frame-trades`` (default 1,000,000) aggregate trades from the cache:
   the peak of traced memory (tracemalloc; numpy's arrays included) during the call against the
   DataFrame's own size (``memory_usage(deep=True)``): target <= 2x.

Run: ``python bench/history.py [--trades N] [--frame-trades N] [--write-results]`` (needs
``wsmanager[notebook]`` for case 3); ``--write-results`` replaces its section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from wsmanager import WSManager
from wsmanager.history.convert import agg_trades_from_csv
from wsmanager.testing import FakeExchange, PastSpec

DAY_MS = 86_400_000
HERE = Path(__file__).resolve().parent
SECTION = "## History, then live (`bench/history.py`)"
NOTES = """How each figure is made: the fake exchange's past on loopback
(`FakeExchange(history=...)`: its public archive and REST API, files made before timing), default
manager options with a fresh
temporary `cache_dir`. Candles: `history("btcusdt@kline_1m", <a whole archived day>)`; the
baseline is the same day with `archive_url=None` (REST: 2 pages of 1,000). Conversion: the day's
CSV in the loader's chunks (512 KiB) through `agg_trades_from_csv` into stream-shaped dicts,
against splitting the same lines only (`line.split(",")`, no dict built), same process, same run;
then the same day end to end through `history()` from the warm cache (unzip, parse, checks, one
list). Memory: tracemalloc's peak (numpy's arrays included) during a second `history_frame` call
(the cache warm) against `DataFrame.memory_usage(deep=True)`. The machine is shared (2 cores, other
work running): absolute rows/s vary by 2x from run to run; the ratio to the baseline is steadier.
"""
QUIET: dict[str, Any] = {"connection_budget": None, "idle_timeout": None}


def _manager(exchange: FakeExchange, **options: Any) -> WSManager:
    settings = {"rest_url": exchange.rest_url, "archive_url": exchange.archive_url, **options}
    return WSManager(url=exchange.url, **QUIET, **settings)


def _day(days_ago: int) -> tuple[datetime, datetime]:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=days_ago)
    return start, start + timedelta(days=1)


def _archive_requests(exchange: FakeExchange) -> int:
    assert exchange.archive is not None
    return len(exchange.archive.requests())


def candles(rows: list[tuple[str, str, str]]) -> None:
    since, until = _day(2)
    with FakeExchange(history=PastSpec(trade_interval_ms=1000), seed=1) as exchange:
        with _manager(exchange, cache_dir=None) as manager:  # the fake makes its files once
            manager.history("btcusdt@kline_1m", since, until, progress=False)
        with tempfile.TemporaryDirectory() as cache:
            with _manager(exchange, cache_dir=cache) as manager:
                before, rest_before = _archive_requests(exchange), len(exchange.rest_requests())
                started = time.perf_counter()
                got = manager.history("btcusdt@kline_1m", since, until, progress=False)
                cold = time.perf_counter() - started
                requests = _archive_requests(exchange) - before
                rest = len(exchange.rest_requests()) - rest_before
                assert len(got) == 1440, len(got)
                started = time.perf_counter()
                manager.history("btcusdt@kline_1m", since, until, progress=False)
                warm = time.perf_counter() - started
            with _manager(exchange, archive_url=None, cache_dir=None) as manager:
                rest_before = len(exchange.rest_requests())
                started = time.perf_counter()
                manager.history("btcusdt@kline_1m", since, until, progress=False)
                baseline = time.perf_counter() - started
                rest_only = len(exchange.rest_requests()) - rest_before
    rows.append(
        (
            "a day of 1m candles, cold cache: archive requests per archive day",
            f"{requests} (and {rest} REST)",
            "<= 2",
        )
    )
    rows.append(
        (
            "the same: seconds on loopback (vs REST only, the baseline; vs warm cache)",
            f"{cold:.3f} s (REST only {baseline:.3f} s, {rest_only} requests = "
            f"{cold / baseline:.2f}x; warm cache {warm:.3f} s)",
            "<= 2 s",
        )
    )


def trades(rows: list[tuple[str, str, str]], count: int) -> None:
    interval = max(1, DAY_MS // count)
    since, until = _day(2)
    with FakeExchange(history=PastSpec(trade_interval_ms=interval), seed=2) as exchange:
        past = exchange.archive.pasts.of("BTCUSDT") if exchange.archive else None
        assert past is not None
        start = int(since.timestamp() * 1000)
        data = past.agg_trades_csv(start, start + DAY_MS)
        chunks = _chunks(data, 1 << 20)
        gc.collect()
        started = time.perf_counter()
        split = sum(len([line.split(",") for line in c.decode().splitlines()]) for c in chunks)
        base = time.perf_counter() - started
        gc.collect()
        started = time.perf_counter()
        made = sum(len(agg_trades_from_csv(c, "BTCUSDT")) for c in chunks)
        ours = time.perf_counter() - started
        assert made == split
        rows.append(
            (
                f"a day of aggregate trades ({made:,} rows) converted to messages",
                f"{made / ours / 1000:,.0f} k rows/s (baseline, split only: "
                f"{split / base / 1000:,.0f} k rows/s = {ours / base:.2f}x its time)",
                ">= 500 k rows/s",
            )
        )
        del data, chunks
        with tempfile.TemporaryDirectory() as cache, _manager(exchange, cache_dir=cache) as manager:
            manager.history("btcusdt@aggTrade", since, until, progress=False)  # fills it
            gc.collect()
            started = time.perf_counter()
            got = len(manager.history("btcusdt@aggTrade", since, until, progress=False))
            seconds = time.perf_counter() - started
        rows.append(
            (
                "the same day through history(), from the warm cache",
                f"{got / seconds / 1000:,.0f} k rows/s ({seconds:.2f} s)",
                "information",
            )
        )


def _chunks(data: bytes, size: int) -> list[bytes]:
    chunks, start = [], 0
    while start < len(data):
        end = data.find(b"\n", start + size)
        end = len(data) if end < 0 else end + 1
        chunks.append(data[start:end])
        start = end
    return chunks


def frame_memory(rows: list[tuple[str, str, str]], count: int) -> None:
    interval = max(1, DAY_MS // count)
    since, until = _day(2)
    spec = PastSpec(trade_interval_ms=interval)
    with (
        FakeExchange(history=spec, seed=3) as exchange,
        tempfile.TemporaryDirectory() as cache,
        _manager(exchange, cache_dir=cache) as manager,
    ):
        manager.history_frame("btcusdt@aggTrade", since, until, progress=False)  # the cache
        gc.collect()
        tracemalloc.start()
        frame = manager.history_frame("btcusdt@aggTrade", since, until, progress=False)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    size = int(frame.memory_usage(deep=True).sum())
    rows.append(
        (
            f"history_frame of {len(frame):,} aggregate trades: peak memory vs the frame",
            f"{peak / 2**20:,.0f} MiB vs {size / 2**20:,.0f} MiB = {peak / size:.2f}x",
            "<= 2x",
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=1_728_000)
    parser.add_argument("--frame-trades", type=int, default=1_000_000)
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    candles(rows)
    trades(rows, args.trades)
    frame_memory(rows, args.frame_trades)
    meta = (
        f"Run {datetime.now(timezone.utc):%Y-%m-%d} on {platform.machine()}, "
        f"{os.cpu_count()} cores; Python {sys.version.split()[0]}."
    )
    lines = [SECTION, "", meta, "", "| case | figure | target |", "|---|---|---|"]
    lines += [f"| {case} | {figure} | {target} |" for case, figure, target in rows]
    text = "\n".join([*lines, "", NOTES])
    print(text)
    if args.write_results:
        path = HERE / "RESULTS.md"
        head, found, tail = path.read_text().partition(SECTION)
        after = tail.find("\n## ") if found else -1
        rest = tail[after:] if after >= 0 else ""
        path.write_text(head.rstrip("\n") + "\n\n" + text + rest)


if __name__ == "__main__":
    main()
