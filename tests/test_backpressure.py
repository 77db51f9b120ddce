"""Bursts are not data loss: the reader waits for a full buffer (TCP back-pressure) before
anything is dropped, for at most ``max_backpressure`` seconds, and the connection stays healthy.

Issue 19 (1). Each test was seen failing on the code before: a burst of 20,000 with default
options lost about half of it (``callbacks are slower than the stream; dropping``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
# The default liveness and back-pressure options (FAST shortens them for the other tests)
DEFAULTS: dict[str, Any] = {"ping_interval": 20.0, "ping_timeout": 10.0, "max_backpressure": None}
MakeManager = Callable[..., WSManager]
BURST = 100_000


class Counter:
    """A callback that counts and checks the order (trade ids one apart), with ~10 µs of work:
    slower than a burst arrives, fast enough to keep up with a real stream on average."""

    def __init__(self) -> None:
        self.count = 0
        self.out_of_order = 0
        self.last: int | None = None
        self.done = threading.Event()
        self.target = 0

    def __call__(self, message: Any) -> None:
        number = message["t"]
        if self.last is not None and number != self.last + 1:
            self.out_of_order += 1
        self.last = number
        self.count += 1
        started = time.perf_counter()
        while time.perf_counter() - started < 10e-6:
            pass
        if self.count >= self.target:
            self.done.set()


@pytest.mark.parametrize("per_connection", [1, 200], ids=["one-per-stream", "combined"])
def test_a_burst_with_default_options_arrives_whole_and_in_order(
    make_manager: MakeManager, exchange: FakeExchange, per_connection: int
) -> None:
    manager = make_manager(streams_per_connection=per_connection, **DEFAULTS)
    counter = Counter()
    counter.target = 1
    manager.subscribe(TRADE, counter)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and counter.done.wait(0.05))
    counter.target = counter.count + BURST
    counter.done.clear()
    exchange.publish(TRADE, count=BURST)
    assert wait_for(lambda: counter.done.is_set() or _dropped(manager) > 0, 15)
    assert _dropped(manager) == 0
    assert counter.done.is_set(), f"{counter.count} of {counter.target} delivered"
    assert counter.out_of_order == 0
    assert counter.count == counter.target


def test_bursts_on_many_streams_of_one_connection_arrive_whole(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager(streams_per_connection=200, **DEFAULTS)
    streams = [f"s{i}usdt@trade" for i in range(4)]
    counters = {}
    for stream in streams:
        counters[stream] = Counter()
        counters[stream].target = 1
        manager.subscribe(stream, counters[stream])
    for stream in streams:
        assert wait_for(lambda s=stream: exchange.publish(s) > 0 and counters[s].done.wait(0.05))
    for stream in streams:
        counters[stream].target = counters[stream].count + BURST // 4
        counters[stream].done.clear()
    for stream in streams:
        exchange.publish(stream, count=BURST // 4)
    assert wait_for(
        lambda: all(c.done.is_set() for c in counters.values()) or _dropped(manager), 15
    )
    assert _dropped(manager) == 0
    for stream in streams:
        assert counters[stream].done.is_set()
        assert counters[stream].out_of_order == 0


def test_a_callback_slower_than_the_feed_for_longer_than_the_bound_loses_the_oldest(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    """The reader waits ``max_backpressure``, then drops the oldest (counted); meanwhile the
    connection stays healthy: no reconnect although the wait is longer than ping_timeout."""
    manager = make_manager(max_buffered_messages=50, max_backpressure=0.4 * SCALE)
    release = threading.Event()
    recorder = Recorder()

    def slow(message: Any) -> None:
        recorder(message)
        release.wait(0.01)

    manager.subscribe(TRADE, slow, recorder.on_error)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(recorder.messages))
    started = time.monotonic()
    exchange.publish(TRADE, count=2_000)  # 20 s of callbacks
    assert wait_for(lambda: manager.get_stream_info()[0].dropped_messages > 0, 10)
    waited = time.monotonic() - started
    assert waited >= 0.3 * SCALE  # it waited before dropping
    release.set()  # the callback is fast again
    assert wait_for(lambda: manager.get_stream_info()[0].buffered_messages == 0, 10)
    info = manager.get_stream_info()[0]
    assert info.reconnects == 0  # the pings were answered and ours judged fairly
    assert not recorder.errors
    # every message is either delivered or counted as dropped
    assert wait_for(
        lambda: len(recorder.messages) + manager.get_stream_info()[0].dropped_messages >= 2_000 + 1
    )


def test_a_slow_stream_holds_its_neighbour_back_at_most_the_bound(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager(
        streams_per_connection=200, max_buffered_messages=50, max_backpressure=0.3 * SCALE
    )
    stop = threading.Event()
    slow_got: list[Any] = []
    fast = Recorder()
    manager.subscribe("slowusdt@trade", lambda m: (slow_got.append(m), stop.wait(0.05)))
    manager.subscribe(TRADE, fast)
    assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(fast.messages))
    assert wait_for(lambda: exchange.publish("slowusdt@trade") > 0 and bool(slow_got))
    exchange.publish("slowusdt@trade", count=1_000)  # 50 s of callbacks
    started = time.monotonic()
    count = len(fast.messages)
    exchange.publish(TRADE, count=10)  # behind the slow burst, in the same socket
    assert fast.wait_messages(count + 10, 5)
    assert time.monotonic() - started < 0.3 * SCALE + 2.0  # held back at most the bound
    assert wait_for(lambda: _info(manager, "slowusdt@trade").dropped_messages > 0)
    count = len(fast.messages)
    exchange.publish(TRADE, count=100)  # twice its buffer while the slow one drops
    assert fast.wait_messages(count + 100, 5)
    assert _info(manager, TRADE).dropped_messages == 0
    stop.set()


def _dropped(manager: WSManager) -> int:
    return sum(i.dropped_messages for i in manager.get_stream_info())


def _info(manager: WSManager, stream: str) -> Any:
    return next(i for i in manager.get_stream_info() if i.name == stream)


def test_max_backpressure_is_validated_against_the_ping_settings() -> None:
    with pytest.raises(ValueError, match="max_backpressure"):
        WSManager(url="ws://127.0.0.1:9/ws/", **{**FAST, "max_backpressure": 60.0})
    with pytest.raises(ValueError, match="max_backpressure"):
        WSManager(url="ws://127.0.0.1:9/ws/", max_backpressure=-1.0)
    with pytest.raises(ValueError, match="max_backpressure"):
        WSManager(url="ws://127.0.0.1:9/ws/", max_backpressure=40.0)  # 20 + 10 s of pings
    WSManager(url="ws://127.0.0.1:9/ws/", max_backpressure=0).destroy()  # drop at once


def test_the_dropping_warning_is_logged_outside_the_library_locks(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    """Logging handlers are user code: one that calls back into the manager when the
    "dropping the oldest" warning comes must not find a library lock held (a deadlock, or a
    LockOrderError under the suite's lock checker)."""
    manager = make_manager(max_buffered_messages=10, max_backpressure=0.1 * SCALE)
    release = threading.Event()
    outcomes: list[object] = []
    called = threading.Event()
    unsubscribe_other = manager.subscribe("ethusdt@trade", lambda message: None)

    class CallsBack(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "dropping the oldest" not in record.getMessage() or called.is_set():
                return
            try:
                unsubscribe_other()  # takes the registry lock, then the delivery lock
                outcomes.append(manager.get_stream_info())
            except BaseException as exc:  # recorded: logging would swallow it
                outcomes.append(exc)
            called.set()

    handler = CallsBack()
    logging.getLogger("wsmanager").addHandler(handler)
    try:
        manager.subscribe(TRADE, lambda message: release.wait(0.01))
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE, count=500)
        assert called.wait(10 * SCALE)
    finally:
        logging.getLogger("wsmanager").removeHandler(handler)
        release.set()
    assert len(outcomes) == 1 and not isinstance(outcomes[0], BaseException), outcomes
