"""Order books on SBE depth (``<symbol>@depth``, every 20 ms on the real exchange) against the
fake exchange's true book: 1,000 randomized events with gaps, duplicates and a dropped
connection, every synced state compared with the exchange's book at the same update id."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE, wait_for

from wsmanager import WSManager
from wsmanager.backoff import BackoffPolicy
from wsmanager.book import BookView, OrderBook
from wsmanager.testing import FakeExchange

KEY = "sbe-book-test-key"
STREAM = "btcusdt@depth"


class SbeRig:
    """An SBE exchange, a manager, and a book whose synced states are checked against the truth."""

    def __init__(self, exchange: FakeExchange) -> None:
        self.exchange = exchange
        self.manager = WSManager(url=exchange.url, encoding="sbe", api_key=KEY, **FAST)
        self.lock = threading.Lock()  # guards the counters below
        self.delivered = threading.Condition(self.lock)
        self.last_seen = 0
        self.gaps = 0
        self.checked = 0
        self.mismatches: list[str] = []
        self.book: OrderBook | None = None

    def subscribe(
        self, stream: str, callback: Callable[[Any], object], on_error: Any = None,
        on_complete: Any = None,
    ) -> Callable[[], None]:  # fmt: skip
        def observed(event: Any) -> None:
            book = self.book
            before = book.last_update_id if book is not None else None
            callback(event)
            with self.lock:
                if before is not None and event["U"] > before + 1:
                    self.gaps += 1
                self.last_seen = max(self.last_seen, event["u"])
                self.delivered.notify_all()

        return self.manager.subscribe(stream, observed, on_error, on_complete)

    def open_book(self) -> OrderBook:
        self.book = OrderBook(
            self.subscribe,
            "BTCUSDT",
            rest_url=self.exchange.rest_url,
            speed="20ms",
            min_snapshot_interval=0.05 * SCALE,
            retry=BackoffPolicy(0.01 * SCALE, 0.1 * SCALE),
        )
        self.book.on_update(lambda book: self.compare(book.view()))
        return self.book

    def compare(self, view: BookView) -> None:
        if not view.synced:
            return
        assert view.last_update_id is not None
        truth = self.exchange.book("BTCUSDT", view.last_update_id)
        with self.lock:
            self.checked += 1
            if (view.bids, view.asks) != (truth.bids(), truth.asks()):
                self.mismatches.append(f"book differs at {view.last_update_id}")

    def publish(self) -> None:
        if self.exchange.publish(STREAM):
            last = self.exchange.sequence(STREAM)
            with self.delivered:
                self.delivered.wait_for(lambda: self.last_seen >= last, 1.0 * SCALE)

    def caught_up(self) -> bool:
        book = self.book
        assert book is not None
        for _ in range(30):
            self.publish()
            if wait_for(
                lambda: book.synced and book.last_update_id == self.exchange.sequence(STREAM),
                timeout=0.3,
            ):
                return True
        return False

    def close(self) -> None:
        if self.book is not None:
            self.book.close()
        self.manager.destroy()


@pytest.fixture
def rig() -> Iterator[SbeRig]:
    with FakeExchange(encoding="sbe", seed=5, book_levels=60) as exchange:
        r = SbeRig(exchange)
        yield r
        r.close()


@pytest.mark.timeout(180)
def test_a_book_on_sbe_depth_equals_the_true_book_through_a_thousand_random_events(
    rig: SbeRig,
) -> None:
    rng = random.Random(21)
    book = rig.open_book()
    exchange = rig.exchange
    assert exchange.wait_for_open(STREAM)
    assert rig.caught_up()
    faults: Counter[str] = Counter()
    for _ in range(1000):
        roll = rng.random()
        if roll < 0.005:
            faults["dropped connection"] += 1
            exchange.drop(STREAM)
            exchange.publish(STREAM)  # lost: nobody carries the stream
            assert wait_for(lambda: exchange.stats(STREAM).open == 1)
        elif roll < 0.025:
            faults["skipped updates"] += 1
            exchange.skip(STREAM, rng.randint(1, 5))
        elif roll < 0.045:
            faults["duplicate updates"] += 1
            rig.publish()
            exchange.repeat(STREAM)
        rig.publish()
        rig.compare(book.view())  # a reader on another thread, after every step
    assert rig.caught_up()
    rig.compare(book.view())
    summary = (
        f"faults {dict(faults)}; resyncs {book.resyncs}; gaps {rig.gaps}; "
        f"compared {rig.checked}; mismatches {rig.mismatches[:3]}"
    )
    print(summary)
    assert not rig.mismatches, summary
    assert book.resyncs >= 1 and rig.gaps >= 1 and rig.checked > 100, summary
    assert book.best_bid() == exchange.book("BTCUSDT").best_bid()


def test_order_book_on_an_sbe_manager_reads_the_20ms_depth_stream() -> None:
    with FakeExchange(encoding="sbe", seed=9) as exchange:
        manager = WSManager(url=exchange.url, encoding="sbe", api_key=KEY, **FAST)
        try:
            book = manager.order_book("BTCUSDT", exchange.rest_url)
            assert book.stream == STREAM
            assert exchange.wait_for_open(STREAM)
            assert wait_for(lambda: exchange.publish(STREAM) > 0 and book.synced, 10)
            exchange.publish(STREAM)
            last = exchange.sequence(STREAM)
            assert wait_for(lambda: book.last_update_id == last)
            truth = exchange.book("BTCUSDT", last)
            assert (book.bids(), book.asks()) == (truth.bids(), truth.asks())
            with pytest.raises(ValueError, match="20 ms"):
                manager.order_book("ETHUSDT", exchange.rest_url, speed="100ms")
        finally:
            manager.destroy()


def test_speed_20ms_belongs_to_sbe(exchange: FakeExchange) -> None:
    with WSManager(url=exchange.url, **FAST) as manager, pytest.raises(ValueError, match="SBE"):
        manager.order_book("BTCUSDT", exchange.rest_url, speed="20ms")
