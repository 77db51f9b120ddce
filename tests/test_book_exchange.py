"""Order books and backfill against the fake exchange's true order book and REST API, over
real WebSocket and HTTP connections, with the real WSManager: 1,000 randomized fault steps."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from book_rig import Rig
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.book import BackfillError, fetch_agg_trades
from wsmanager.testing import FakeExchange

STREAM = "btcusdt@depth@100ms"


@pytest.fixture
def rig() -> Iterator[Rig]:
    with FakeExchange(seed=7, book_levels=60) as exchange:
        r = Rig(exchange)
        yield r
        r.close()


def test_the_book_equals_the_exchange_book_and_follows_it(rig: Rig) -> None:
    book = rig.open_book()
    assert rig.exchange.wait_for_open(STREAM)
    assert rig.caught_up()
    for _ in range(100):
        rig.publish()
    assert rig.caught_up()
    rig.compare(book.view())
    assert rig.checked > 100 and not rig.mismatches and book.resyncs == 0
    assert book.best_bid() == rig.exchange.book("BTCUSDT").best_bid()
    requests = [r for r in rig.exchange.rest_requests() if r[1] == "/api/v3/depth"]
    assert len(requests) == 1 and book.stats().snapshot_requests == 1


def test_a_lagging_snapshot_is_retaken_until_the_buffer_covers_it(rig: Rig) -> None:
    for _ in range(100):  # history from before the book
        rig.exchange.publish(STREAM)
    rig.exchange.snapshot_lag(50)  # every snapshot is 50 update ids behind the stream
    book = rig.open_book()
    assert rig.exchange.wait_for_open(STREAM)
    rig.publish()
    assert wait_for(lambda: book.stats().snapshot_requests >= 1)
    assert not book.synced  # too old for the one buffered event: retaken
    while not book.synced:  # until the buffered events reach back to the lagging snapshot
        rig.publish()
    assert book.stats().snapshot_requests >= 2
    assert wait_for(lambda: rig.checked > 0) and not rig.mismatches  # the sync's callback ran
    rig.exchange.snapshot_lag(0)
    rig.exchange.skip(STREAM, 3)
    assert rig.caught_up()
    assert book.resyncs == 1 and rig.gaps == 1 and not rig.unresynced_gaps
    assert not rig.mismatches


def test_429_retry_after_is_honoured_by_the_book(rig: Rig) -> None:
    rig.exchange.rest_throttle(429, retry_after=1, count=1)
    book = rig.open_book()
    assert rig.exchange.wait_for_open(STREAM)
    started = time.monotonic()
    assert rig.caught_up()
    assert time.monotonic() - started >= 1.0
    depth = [r for r in rig.exchange.rest_requests() if r[1] == "/api/v3/depth"]
    assert [r[3] for r in depth] == [429, 200]
    assert depth[1][0] - depth[0][0] >= 1.0
    assert book.resyncs == 0 and not rig.mismatches


@pytest.mark.timeout(180)
def test_a_thousand_random_steps_of_faults_never_show_a_wrong_book(rig: Rig) -> None:
    rng = random.Random(12)
    book = rig.open_book()
    exchange = rig.exchange
    assert exchange.wait_for_open(STREAM)
    faults: Counter[str] = Counter()
    lagging_until = slow_until = -1
    for step in range(1000):
        if step == lagging_until:
            exchange.snapshot_lag(0)
        if step == slow_until:
            exchange.rest_delay(0)
        roll = rng.random()
        if roll < 0.1:
            book.wait_synced(2 * SCALE)  # faults mostly hit a synced book
        if roll < 0.01:
            faults["dropped connection"] += 1
            exchange.drop(STREAM)
            exchange.publish(STREAM)  # lost: nobody carries the stream
            assert wait_for(lambda: exchange.stats(STREAM).open == 1)
        elif roll < 0.04:
            faults["skipped updates"] += 1
            exchange.skip(STREAM, rng.randint(1, 5))
        elif roll < 0.05:
            faults["lagging snapshots"] += 1
            exchange.snapshot_lag(rng.choice([5, 50]))
            lagging_until = step + rng.randint(1, 20)
        elif roll < 0.07:
            faults["REST errors"] += 1
            exchange.rest_errors(rng.choice([500, 503]), count=rng.randint(1, 3))
        elif roll < 0.075:
            faults["REST 429 with Retry-After"] += 1
            exchange.rest_throttle(429, retry_after=0, count=1)
        elif roll < 0.085:
            faults["slow REST"] += 1
            exchange.rest_delay(0.05)
            slow_until = step + rng.randint(1, 20)
        elif roll < 0.1:
            faults["duplicate updates"] += 1
            rig.publish()
            exchange.repeat(STREAM)
        rig.publish()
        if rng.random() < 0.2:  # a reader on another thread, at any moment
            view = book.view()
            if view.synced:
                rig.compare(view)
    exchange.rest_normal()
    assert rig.caught_up()
    summary = (
        f"1000 steps; faults {dict(faults)}; resyncs {book.resyncs}; snapshot requests "
        f"{book.stats().snapshot_requests}; gaps {rig.gaps}; synced states compared with the "
        f"exchange {rig.checked}; mismatches {len(rig.mismatches)}"
    )
    print(summary)
    assert not rig.mismatches, summary
    assert not rig.unresynced_gaps, summary
    assert rig.gaps > 20 and book.resyncs >= rig.gaps and rig.checked > 500, summary


# -- backfill ------------------------------------------------------------------------------------


def test_a_skipped_range_of_aggregate_trades_comes_back_from_rest_in_order() -> None:
    stream = "btcusdt@aggTrade"
    with FakeExchange(seed=3) as exchange, WSManager(url=exchange.url, **FAST) as manager:
        recorder = Recorder()
        manager.subscribe(stream, recorder)
        assert exchange.wait_for_open(stream)
        for _ in range(3):
            exchange.publish(stream)
        exchange.skip(stream, 1500)
        for _ in range(2):
            exchange.publish(stream)
        assert recorder.wait_messages(5)
        ids = [m["a"] for m in recorder.messages]
        assert ids[3] - ids[2] == 1501
        trades = fetch_agg_trades(exchange.rest_url, "btcusdt", ids[2] + 1, ids[3] - 1)
        assert [t["a"] for t in trades] == list(range(ids[2] + 1, ids[3]))
        both = fetch_agg_trades(exchange.rest_url, "BTCUSDT", ids[0], ids[-1])
        assert len(both) == ids[-1] - ids[0] + 1
        by_id = {t["a"]: t for t in both}
        for message in recorder.messages:  # exactly the stream's payloads, but the event time
            assert set(by_id[message["a"]]) == set(message)
            assert {k: v for k, v in by_id[message["a"]].items() if k != "E"} == {
                k: v for k, v in message.items() if k != "E"
            }
        pages = [r for r in exchange.rest_requests() if r[1] == "/api/v3/aggTrades"]
        assert len(pages) == 2 + 2  # 1500 ids: two pages; 1505 ids: two pages


def test_backfill_with_rest_down_is_an_error_to_report() -> None:
    with FakeExchange(seed=3) as exchange:
        for _ in range(10):
            exchange.publish("btcusdt@aggTrade")
        exchange.rest_errors(503, count=None)
        with pytest.raises(BackfillError, match="gave up") as caught:
            fetch_agg_trades(exchange.rest_url, "BTCUSDT", 1, 5, timeout=0.3 * SCALE)
        assert caught.value.trades == []
        exchange.rest_normal()
        assert [t["a"] for t in fetch_agg_trades(exchange.rest_url, "BTCUSDT", 1, 5)] == [
            1, 2, 3, 4, 5,
        ]  # fmt: skip
