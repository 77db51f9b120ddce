"""The blocking iterator and collect(), against the fake exchange."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import wait_for

from wsmanager import HandshakeRejectedError, WSManager
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


def test_iterate_yields_messages_in_order_and_unsubscribes_on_exit(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    with manager.iterate(TRADE, timeout=5) as messages:
        assert exchange.wait_for_open(TRADE, 1)
        for n in range(3):
            exchange.publish(TRADE, {"n": n})
        assert [next(messages)["n"] for _ in range(3)] == [0, 1, 2]
    assert manager.get_active_streams_count() == 0
    assert exchange.wait_for_open(TRADE, 0)


def test_iterate_timeout_raises_timeout_error(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    with manager.iterate(TRADE, timeout=0.2) as messages:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=TRADE):
            next(messages)
        assert 0.15 <= time.monotonic() - started < 2


def test_iteration_stops_when_the_stream_ends(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    with manager.iterate(TRADE, timeout=5) as messages:
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE, {"last": True})
        assert next(messages) == {"last": True}
        assert manager.force_cleanup_idle_streams(0) == 1
        assert list(messages) == []


def test_iterate_raises_the_unrecoverable_error(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(403)
    manager = make_manager()
    with manager.iterate(TRADE, timeout=5) as messages, pytest.raises(HandshakeRejectedError):
        next(messages)


def test_the_iterator_buffer_is_bounded(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager()
    with manager.iterate(TRADE, timeout=5, max_buffered=5) as messages:
        assert exchange.wait_for_open(TRADE, 1)
        for n in range(20):
            exchange.publish(TRADE, {"n": n})
        assert exchange.wait_until(lambda: exchange.stats(TRADE).sent == 20)
        assert wait_for(lambda: messages.dropped == 15)
        assert [next(messages)["n"] for _ in range(5)] == [15, 16, 17, 18, 19]


def test_collect_returns_count_messages(exchange: FakeExchange, make_manager: MakeManager) -> None:
    exchange.set_rate(100)
    manager = make_manager()
    got = manager.collect(TRADE, 5, timeout=5)
    assert len(got) == 5 and all(m["e"] == "trade" for m in got)
    assert manager.get_active_streams_count() == 0


def test_collect_returns_fewer_when_time_runs_out(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    started = time.monotonic()
    assert manager.collect(TRADE, 5, timeout=0.3) == []
    assert time.monotonic() - started < 2
    with pytest.raises(ValueError, match="count"):
        manager.collect(TRADE, -1, timeout=1)
