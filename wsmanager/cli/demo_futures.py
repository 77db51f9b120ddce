"""``wsmanager demo --futures``: USD-M futures on the bundled exchange, no internet needed.

The exchange serves USD-M as Binance does since 2026-04-23: ``/public`` (depth, book tickers)
and ``/market`` (trades, mark prices, klines) routes, the old root silent. One routed manager
(``endpoint="usdm"``) follows ten streams of two symbols and a futures order book; each stream
goes to its route, no connection mixes routes. Midway the exchange loses a depth event (the
``pu`` chain breaks: one gap, one resync), later it drops every connection. The summary checks
every promise with a number: routes, gaps, the book against the exchange's true book at the same
update id, and the REST paths asked (``/fapi/v1`` only).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from ..manager import WSManager
from .demo import play
from .view import LiveView

__all__ = ["FUTURES_STREAMS", "run_futures_demo"]

SYMBOLS = ("btcusdt", "ethusdt")
KINDS = ("depth@100ms", "bookTicker", "aggTrade", "markPrice", "kline_1m")
FUTURES_STREAMS = tuple(f"{s}@{k}" for s in SYMBOLS for k in KINDS)
BOOK_SYMBOL = "BTCUSDT"
BROKEN = "btcusdt@depth@100ms"  # the book's stream: the exchange loses one of its events


def run_futures_demo(seconds: float, rate: float) -> int:
    from ..testing import FakeExchange

    lock = threading.Lock()
    delivered: Counter[str] = Counter()

    def counter(stream: str) -> Any:
        def count(message: Any) -> None:
            with lock:
                delivered[stream] += 1

        return count

    with (
        FakeExchange(market="usdm", rate=rate, seed=1) as exchange,
        WSManager(
            url=exchange.root_url,
            endpoint="usdm",
            rest_url=exchange.rest_url,
            base_retry_delay=0.2,
            max_retry_delay=2.0,
            ping_interval=5.0,
            ping_timeout=2.0,
        ) as manager,
    ):
        for stream in FUTURES_STREAMS:
            manager.subscribe(stream, counter(stream))
        started = time.monotonic()
        book = manager.order_book(BOOK_SYMBOL, limit=100)
        print(
            f"fake USD-M exchange at {exchange.root_url} (routes /public and /market); one "
            f"manager (endpoint='usdm') with {len(FUTURES_STREAMS)} streams and a futures order "
            f"book, {rate:g} msg/s each; running {seconds:g}s"
        )
        synced_after = book.wait_synced(10) and time.monotonic() - started
        routes = Counter(c.path.split("/")[1] for c in exchange.connections())
        view = LiveView(manager)
        faults: list[tuple[float, str, Any]] = [
            (0.35, "the exchange lost a depth event (the pu chain breaks)",
             lambda: exchange.skip(BROKEN, 3)),
            (0.65, "the exchange dropped every connection", exchange.drop),
        ]  # fmt: skip
        play(manager, view, book, faults, started, seconds, f"futures order book {BOOK_SYMBOL}")
        equal, checked_at = _book_matches(book, exchange)
        metrics = manager.get_metrics()
        withheld = exchange.withheld()
        paths = sorted({r.path for r in exchange.rest_requests()})
    print("\n== summary ==")
    print(
        f"streams: {len(FUTURES_STREAMS)} on one manager; connections by route: "
        + ", ".join(f"/{route} {count}" for route, count in sorted(routes.items()))
        + f"; streams on a route that does not serve them: {len(withheld)}"
    )
    quiet = [s for s in FUTURES_STREAMS if not delivered[s]]
    print(
        f"every stream delivered: {'yes' if not quiet else 'NO: ' + ', '.join(quiet)}; "
        f"messages: {sum(delivered.values())}"
    )
    print(
        f"gaps reported: {metrics.gaps} (the lost depth event, and the market going on during "
        f"the reconnect; none from U jumping, which every event does)"
    )
    synced = f"synced after {synced_after * 1000:.0f} ms" if synced_after else "never synced"
    print(
        f"futures order book {BOOK_SYMBOL}: {synced}; resyncs: {metrics.order_book_resyncs}; "
        f"equal to the exchange's true book at update {checked_at}: {'yes' if equal else 'NO'}"
    )
    print(f"REST paths asked: {', '.join(paths)} (never /api/v3)")
    return 0


def _book_matches(book: Any, exchange: Any) -> tuple[bool, int | None]:
    """Whether the book equals the exchange's true book as it was at the book's update id."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        view = book.view()
        if view.synced and view.last_update_id is not None:
            true = exchange.book(BOOK_SYMBOL, update_id=view.last_update_id)
            limit = len(view.bids)
            if view.bids == true.bids(limit) and view.asks == true.asks(len(view.asks)):
                return True, view.last_update_id
        time.sleep(0.05)
    view = book.view()
    return False, view.last_update_id
