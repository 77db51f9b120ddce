"""The legacy manager: it forgets finished connections, and a callback cannot end its reader."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from conftest import Recorder

from wsmanager.legacy.manager import LegacyConnectionManager, _LegacyConnection
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"


def held(legacy: LegacyConnectionManager) -> int:
    """Connection objects the manager keeps (live or still stopping)."""
    return sum(len(v) for v in vars(legacy).values() if isinstance(v, (set, list)))


def alive_objects() -> int:
    gc.collect()
    return sum(type(o) is _LegacyConnection for o in gc.get_objects())


def test_subscribe_unsubscribe_cycles_leave_no_finished_connection(
    exchange: FakeExchange,
) -> None:
    legacy = LegacyConnectionManager(exchange.url, reconnect_delay=0.05)
    baseline = alive_objects()
    most_held = 0
    for cycle in range(200):
        unsubscribe = legacy.subscribe(TRADE, Recorder())
        assert exchange.wait_for_attempts(TRADE, cycle + 1)
        unsubscribe()
        most_held = max(most_held, held(legacy))
    del unsubscribe
    assert most_held <= 20, f"the manager held {most_held} connections over 200 cycles"
    assert alive_objects() - baseline <= 20
    legacy.close()
    assert held(legacy) == 0
    assert alive_objects() == baseline
    legacy.close()  # idempotent


def test_close_keeps_nothing_and_a_later_cycle_starts_clean(exchange: FakeExchange) -> None:
    legacy = LegacyConnectionManager(exchange.url)
    for _ in range(3):
        legacy.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 3)
    legacy.close()
    assert held(legacy) == 0 and legacy.connection_count == 0
    assert exchange.wait_for_open(TRADE, 0)
    unsubscribe = legacy.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    unsubscribe()
    legacy.close()
    assert held(legacy) == 0


def _recurse(depth: int = 0) -> int:
    return _recurse(depth + 1) + 1


def _raise_exit() -> None:
    sys.exit(3)


@pytest.mark.parametrize(
    "trouble",
    ["sys.exit", "recursion", "deep json"],
)
def test_the_reader_survives_what_a_message_or_callback_throws(
    exchange: FakeExchange, trouble: str
) -> None:
    recorder = Recorder()

    def callback(message: Any) -> None:
        if message == {"trouble": "sys.exit"}:
            _raise_exit()
        if message == {"trouble": "recursion"}:
            _recurse()
        recorder(message)

    legacy = LegacyConnectionManager(exchange.url, reconnect_delay=0.05)
    try:
        legacy.subscribe(TRADE, callback)
        assert exchange.wait_for_open(TRADE, 1)
        if trouble == "deep json":
            depth = 100_000  # RecursionError in the stdlib decoder
            exchange.send_raw(TRADE, "[" * depth + "]" * depth)
        else:
            exchange.publish(TRADE, {"trouble": trouble})
        exchange.publish(TRADE, {"after": trouble})
        assert recorder.wait(lambda r: {"after": trouble} in r.messages)
        assert exchange.stats(TRADE).accepted == 1  # the same connection carried on
    finally:
        legacy.close()
