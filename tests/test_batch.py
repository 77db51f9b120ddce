"""Batch callbacks: ``subscribe(stream, callback, batch=True)`` (issue 19, 3).

Each test was seen failing on the code before (``subscribe`` had no ``batch``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from conftest import SCALE, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


class Batches:
    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.changed = threading.Condition()

    def __call__(self, messages: list[Any]) -> None:
        with self.changed:
            self.batches.append(messages)
            self.changed.notify_all()

    def messages(self) -> list[Any]:
        with self.changed:
            return [m for batch in self.batches for m in batch]

    def wait_count(self, count: int, timeout: float = 5.0) -> bool:
        with self.changed:
            return self.changed.wait_for(
                lambda: sum(len(b) for b in self.batches) >= count, timeout * SCALE
            )


def test_batch_callbacks_get_non_empty_lists_in_order(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager()
    batches = Batches()
    manager.subscribe(TRADE, batches, batch=True)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(batches.batches))
    exchange.publish(TRADE, count=5_000)
    last = exchange.sequence(TRADE)
    assert wait_for(lambda: batches.messages()[-1]["t"] == last)
    numbers = [m["t"] for m in batches.messages()]
    assert numbers == list(range(numbers[0], last + 1))
    assert all(isinstance(b, list) and b for b in batches.batches)
    assert len(batches.batches) < len(numbers)  # messages came several at a time


def test_batch_and_per_message_subscribers_share_one_stream(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager(streams_per_connection=200)
    batches = Batches()
    single = Recorder()
    other = Recorder()
    manager.subscribe(TRADE, batches, batch=True)
    manager.subscribe(TRADE, single)
    manager.subscribe("ethusdt@trade", other)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(single.messages))
    assert wait_for(lambda: exchange.publish("ethusdt@trade") > 0 and bool(other.messages))
    assert len(manager.get_stream_info()) == 2
    assert manager.get_metrics().connections == 1  # one connection carries both streams
    count = len(single.messages)
    exchange.publish(TRADE, count=1_000)
    assert single.wait_messages(count + 1_000)
    assert batches.wait_count(count + 1_000)
    assert batches.messages()[-1000:] == single.messages[-1000:]


def test_unsubscribe_from_inside_a_batch_callback(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager()
    got: list[list[Any]] = []
    keep = Recorder()
    unsubscribe: list[Callable[[], None]] = []

    def once(messages: list[Any]) -> None:
        got.append(messages)
        unsubscribe[0]()

    unsubscribe.append(manager.subscribe(TRADE, once, batch=True))
    manager.subscribe(TRADE, keep)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(got))
    count = len(keep.messages)
    exchange.publish(TRADE, count=100)
    assert keep.wait_messages(count + 100)
    assert len(got) == 1  # nothing after the unsubscribe
    assert manager.get_stream_info()[0].subscribers == 1


def test_a_batch_callback_that_raises_is_counted_and_delivery_goes_on(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager()
    calls: list[int] = []

    def fails(messages: list[Any]) -> None:
        calls.append(len(messages))
        raise SystemExit("a batch callback that exits")

    manager.subscribe(TRADE, fails, batch=True)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and len(calls) >= 2)
    assert manager.get_stream_info()[0].callback_errors >= 2


def test_batch_must_be_a_bool(make_manager: MakeManager) -> None:
    manager = make_manager()
    try:
        manager.subscribe(TRADE, print, batch="yes")  # type: ignore[arg-type]
    except TypeError as exc:
        assert "batch" in str(exc)
    else:
        raise AssertionError("batch='yes' was accepted")
