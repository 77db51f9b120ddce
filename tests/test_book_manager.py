"""OrderBook on the real WSManager (real WebSocket connections to the fake exchange) with a
true book of the test's own publishing the diffs, and a real HTTP server for the snapshots:
1,000 randomized steps of faults, and the book is never wrong."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE, wait_for
from test_book_sync import RestServer, TrueBook

from wsmanager import WSManager
from wsmanager.backoff import BackoffPolicy
from wsmanager.book import OrderBook
from wsmanager.testing import FakeExchange

STREAM = "btcusdt@depth@100ms"


class Rig:
    """A manager, the exchange, the truth, REST with faults, and an observed book."""

    def __init__(self, exchange: FakeExchange, seed: int) -> None:
        self.lock = threading.Lock()  # guards the counters below
        self.exchange = exchange
        self.truth = TrueBook(seed=seed)
        self.lag = 0  # update ids the next `lagging` snapshots are behind the stream
        self.lagging = 0
        self.rest_failures = 0
        self.rest = RestServer(self._answer)
        self.manager = WSManager(url=exchange.url, **FAST)
        self.book: OrderBook | None = None
        self.checked = 0
        self.mismatches: list[str] = []
        self.gaps_seen = 0
        self.unresynced_gaps: list[tuple[int, int]] = []
        self.delivered = threading.Condition(self.lock)
        self.last_seen = 0  # u of the last event the book was given

    def _answer(self, params: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            if self.rest_failures:
                self.rest_failures -= 1
                return 500, {"code": -1000, "msg": "boom"}
            lag = self.lag if self.lagging else 0
            self.lagging = max(0, self.lagging - 1)
        return 200, self.truth.snapshot(lag)

    def subscribe(
        self,
        stream: str,
        callback: Callable[[Any], object],
        on_error: Any = None,
        on_complete: Any = None,
    ) -> Callable[[], None]:
        """manager.subscribe, watching each event go through the book: a gap must resync."""

        def observed(event: Any) -> None:
            book = self.book
            assert book is not None
            before = book.last_update_id
            syncs = book._sync.syncs
            callback(event)
            with self.lock:
                if before is not None and event["U"] > before + 1:
                    self.gaps_seen += 1
                    if book.synced and book._sync.syncs == syncs:
                        self.unresynced_gaps.append((before, event["U"]))
                self.last_seen = event["u"]
                self.delivered.notify_all()

        return self.manager.subscribe(stream, observed, on_error, on_complete)

    def open_book(self) -> OrderBook:
        self.book = OrderBook(
            self.subscribe,
            "BTCUSDT",
            rest_url=self.rest.url,
            min_snapshot_interval=0.05 * SCALE,
            retry=BackoffPolicy(0.01 * SCALE, 0.1 * SCALE),
        )
        self.book.on_update(self.check)
        return self.book

    def check(self, book: OrderBook) -> None:
        """Whenever the book says synced, it equals the truth at its update id."""
        view = book.view()
        if not view.synced:
            return
        assert view.last_update_id is not None
        bids, asks = self.truth.at(view.last_update_id)
        with self.lock:
            self.checked += 1
            if view.bids != bids or view.asks != asks:
                self.mismatches.append(f"at {view.last_update_id}")
            if any(q == 0 for _, q in view.bids + view.asks):
                self.mismatches.append(f"a zero level at {view.last_update_id}")

    def publish(self) -> bool:
        """Publish the next diff; True once the book was given it (False: lost)."""
        event = self.truth.step()
        self.exchange.publish(STREAM, event)
        with self.delivered:
            return self.delivered.wait_for(lambda: self.last_seen >= event["u"], 1.0 * SCALE)

    def drop(self) -> None:
        """The connection drops; what the exchange publishes meanwhile is lost."""
        self.exchange.drop(STREAM)
        self.truth.step()
        assert wait_for(lambda: self.exchange.stats(STREAM).open == 1)

    def caught_up(self) -> bool:
        """Publish until the book is synced at the truth's last update (bounded)."""
        book = self.book
        assert book is not None
        deadline = time.monotonic() + 10 * SCALE
        while time.monotonic() < deadline:
            self.publish()
            if wait_for(lambda: book.synced and book.last_update_id == self.truth.update_id,
                        timeout=0.3):  # fmt: skip
                return True
        return False

    def close(self) -> None:
        if self.book is not None:
            self.book.close()
        self.manager.destroy()
        self.rest.close()


@pytest.fixture
def rig(exchange: FakeExchange) -> Iterator[Rig]:
    r = Rig(exchange, seed=12)
    yield r
    r.close()


def test_the_book_syncs_over_a_real_connection_and_resyncs_after_a_drop(rig: Rig) -> None:
    book = rig.open_book()
    assert rig.exchange.wait_for_open(STREAM)
    assert rig.caught_up()
    assert book.resyncs == 0
    rig.drop()
    assert rig.caught_up()
    assert book.resyncs == 1 and rig.gaps_seen == 1 and not rig.unresynced_gaps
    assert rig.checked > 0 and not rig.mismatches


@pytest.mark.timeout(120)
def test_a_thousand_random_steps_of_faults_never_show_a_wrong_book(rig: Rig) -> None:
    rng = random.Random(2026)
    book = rig.open_book()
    assert rig.exchange.wait_for_open(STREAM)
    faults: Counter[str] = Counter()
    for _ in range(1000):
        roll = rng.random()
        if roll < 0.1:
            book.wait_synced(2 * SCALE)  # faults mostly hit a synced book
        if roll < 0.01:
            faults["dropped connection"] += 1
            rig.drop()
        elif roll < 0.04:
            faults["skipped update"] += 1
            rig.truth.step()  # never sent
        elif roll < 0.06:
            faults["lagging snapshot"] += 1
            with rig.lock:
                rig.lag, rig.lagging = rng.choice([3, 30, 300]), rng.randint(1, 3)
        elif roll < 0.08:
            faults["REST errors"] += 1
            with rig.lock:
                rig.rest_failures = rng.randint(1, 3)
        elif roll < 0.1:
            faults["duplicate update"] += 1
            event = rig.truth.step()
            rig.exchange.publish(STREAM, event)
            rig.exchange.publish(STREAM, event)
        else:
            rig.publish()
        if rng.random() < 0.2:  # a reader on another thread, at any moment
            view = book.view()
            if view.synced:
                assert view.last_update_id is not None
                assert (view.bids, view.asks) == rig.truth.at(view.last_update_id)
    rig.lag = 0
    assert rig.caught_up()
    summary = (
        f"1000 steps, faults {dict(faults)}, resyncs {book.resyncs}, "
        f"snapshot requests {book.stats().snapshot_requests}, gaps {rig.gaps_seen}, "
        f"synced states checked {rig.checked}, mismatches {len(rig.mismatches)}"
    )
    print(summary)
    assert not rig.mismatches, summary
    assert not rig.unresynced_gaps, summary
    assert rig.gaps_seen > 0 and book.resyncs > 0 and rig.checked > 500, summary
