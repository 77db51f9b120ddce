"""Order books on SBE depth (``<symbol>@depth``, every 20 ms on the real exchange) against the
fake exchange's true book: 1,000 randomized events with gaps, duplicates and a dropped
connection, every synced state compared with the exchange's book at the same update id."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator

import pytest
from book_rig import Rig
from conftest import FAST, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange

KEY = "sbe-book-test-key"
STREAM = "btcusdt@depth"


@pytest.fixture
def rig() -> Iterator[Rig]:
    with FakeExchange(encoding="sbe", seed=5, book_levels=60) as exchange:
        r = Rig(exchange, STREAM, encoding="sbe", api_key=KEY)
        yield r
        r.close()


@pytest.mark.timeout(180)
def test_a_book_on_sbe_depth_equals_the_true_book_through_a_thousand_random_events(
    rig: Rig,
) -> None:
    rng = random.Random(21)
    book = rig.open_book(speed="20ms")
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
