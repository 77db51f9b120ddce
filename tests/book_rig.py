"""A test rig for local order books: a manager and a book on the fake exchange, each synced
state of the book compared with the exchange's true book (JSON and SBE depth alike)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from conftest import FAST, SCALE, wait_for

from wsmanager import WSManager
from wsmanager.backoff import BackoffPolicy
from wsmanager.book import BookView, OrderBook
from wsmanager.testing import FakeExchange

__all__ = ["Rig"]


class Rig:
    """The exchange, a manager (``options``: more WSManager options), and a book on ``stream``
    whose every synced state is compared with the exchange's true book at the same update id."""

    def __init__(
        self, exchange: FakeExchange, stream: str = "btcusdt@depth@100ms", **options: Any
    ) -> None:
        self.stream = stream
        self.lock = threading.Lock()  # guards the counters below
        self.delivered = threading.Condition(self.lock)
        self.exchange = exchange
        self.manager = WSManager(url=exchange.url, **{**FAST, **options})
        self.book: OrderBook | None = None
        self.checked = 0
        self.mismatches: list[str] = []
        self.gaps = 0
        self.unresynced_gaps: list[tuple[int, int]] = []
        self.last_seen = 0

    def subscribe(
        self, stream: str, callback: Callable[[Any], object], on_error: Any = None,
        on_complete: Any = None,
    ) -> Callable[[], None]:  # fmt: skip
        """``manager.subscribe``, watching each event go through the book: a gap must
        resync it."""

        def observed(event: Any) -> None:
            book = self.book
            assert book is not None
            before, syncs = book.last_update_id, book._sync.syncs
            callback(event)
            with self.lock:
                if before is not None and event["U"] > before + 1:
                    self.gaps += 1
                    if book.synced and book._sync.syncs == syncs:
                        self.unresynced_gaps.append((before, event["U"]))
                self.last_seen = max(self.last_seen, event["u"])
                self.delivered.notify_all()

        return self.manager.subscribe(stream, observed, on_error, on_complete)

    def open_book(self, **options: Any) -> OrderBook:
        settings: dict[str, Any] = {
            "min_snapshot_interval": 0.05 * SCALE,
            "retry": BackoffPolicy(0.01 * SCALE, 0.1 * SCALE),
            **options,
        }
        self.book = OrderBook(self.subscribe, "BTCUSDT", rest_url=self.exchange.rest_url,
                              **settings)  # fmt: skip
        self.book.on_update(self.check)
        return self.book

    def check(self, book: OrderBook) -> None:
        self.compare(book.view())

    def compare(self, view: BookView) -> None:
        """Compare a synced view with the truth (an unsynced one shows nothing to compare)."""
        if not view.synced:
            return
        assert view.last_update_id is not None
        truth = self.exchange.book("BTCUSDT", view.last_update_id)
        with self.lock:
            self.checked += 1
            if (view.bids, view.asks) != (truth.bids(), truth.asks()):
                self.mismatches.append(f"book differs at {view.last_update_id}")
            if any(quantity == 0 for _, quantity in view.bids + view.asks):
                self.mismatches.append(f"a level of quantity 0 at {view.last_update_id}")

    def publish(self) -> None:
        """The exchange's next diff; wait until the book got it (if a connection carried it)."""
        if self.exchange.publish(self.stream):
            last = self.exchange.sequence(self.stream)
            with self.delivered:
                self.delivered.wait_for(lambda: self.last_seen >= last, 1.0 * SCALE)

    def caught_up(self) -> bool:
        book = self.book
        assert book is not None
        deadline = time.monotonic() + 10 * SCALE
        while time.monotonic() < deadline:
            self.publish()
            if wait_for(
                lambda: book.synced and book.last_update_id == self.exchange.sequence(self.stream),
                timeout=0.3,
            ):
                return True
        return False

    def close(self) -> None:
        if self.book is not None:
            self.book.close()
        self.manager.destroy()
