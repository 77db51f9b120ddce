"""The legacy shim, the feature flag, and live migration between implementations."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from conftest import FAST, Recorder, wait_for

from wsmanager.legacy.compat import BinanceConnection, reset_binance_connection
from wsmanager.legacy.manager import LegacyConnectionManager
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"


@pytest.fixture
def shim(exchange: FakeExchange) -> Iterator[Callable[..., BinanceConnection]]:
    made: list[BinanceConnection] = []

    def make(implementation: str) -> BinanceConnection:
        connection = BinanceConnection(
            exchange.url,
            implementation,
            manager_options=FAST,  # type: ignore[arg-type]
        )
        made.append(connection)
        return connection

    yield make
    for connection in made:
        connection.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", "WSManager"),
        ("TRUE", "WSManager"),
        ("1", "WSManager"),
        ("Yes", "WSManager"),
        ("false", "Legacy"),
        ("0", "Legacy"),
        ("", "Legacy"),
        (None, "Legacy"),
    ],
)
def test_the_environment_flag_in_a_fresh_process(value: str | None, expected: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "USE_NEW_WS_MANAGER"}
    if value is not None:
        env["USE_NEW_WS_MANAGER"] = value
    env["BINANCE_WS_URL"] = "ws://127.0.0.1:9/ws/"
    code = (
        "from wsmanager import connection_migration, get_binance_connection as g;"
        "print(connection_migration.get_current_implementation(), g().url)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.split() == [expected, "ws://127.0.0.1:9/ws/"]


@pytest.mark.parametrize(("implementation", "connections"), [("Legacy", 3), ("WSManager", 1)])
def test_three_subscribers_open_three_legacy_connections_and_one_shared(
    exchange: FakeExchange,
    shim: Callable[..., BinanceConnection],
    implementation: str,
    connections: int,
) -> None:
    connection = shim(implementation)
    recorders = [Recorder() for _ in range(3)]
    unsubscribes = [connection.subscribe(TRADE, r) for r in recorders]
    assert exchange.wait_for_open(TRADE, connections)
    exchange.publish(TRADE)
    assert all(r.wait_messages(1) for r in recorders)
    assert exchange.stats(TRADE).accepted == connections
    for unsubscribe in unsubscribes:
        unsubscribe()
    assert exchange.wait_for_open(TRADE, 0)


def test_switching_moves_live_subscriptions_and_old_handles_keep_working(
    exchange: FakeExchange, shim: Callable[..., BinanceConnection]
) -> None:
    connection = shim("Legacy")
    keep, leave = Recorder(), Recorder()
    connection.subscribe(TRADE, keep)
    unsubscribe_leave = connection.subscribe(TRADE, leave)
    assert exchange.wait_for_open(TRADE, 2)
    connection.switch_to("WSManager")
    assert connection.get_current_implementation() == "WSManager"
    assert exchange.wait_for_open(TRADE, 1)  # the two legacy ones closed, one shared opened
    exchange.publish(TRADE, {"n": 1})
    assert keep.wait_messages(1) and leave.wait_messages(1)
    connection.switch_to("WSManager")  # a no-op
    unsubscribe_leave()  # handed out before the switch
    exchange.publish(TRADE, {"n": 2})
    assert keep.wait(lambda r: {"n": 2} in r.messages)
    assert {"n": 2} not in leave.messages
    connection.switch_to("Legacy")
    assert exchange.wait_for_open(TRADE, 1)
    assert wait_for(lambda: connection.connection_count() == 1)
    exchange.publish(TRADE, {"n": 3})
    assert keep.wait(lambda r: {"n": 3} in r.messages)


def test_switching_back_and_forth_under_concurrent_churn(
    exchange: FakeExchange, shim: Callable[..., BinanceConnection]
) -> None:
    connection = shim("WSManager")
    steady = [Recorder() for _ in range(3)]
    for recorder in steady:
        connection.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    stop = threading.Event()

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            unsubscribe = connection.subscribe(rng.choice(["a@trade", "b@trade"]), lambda m: None)
            unsubscribe()

    workers = [threading.Thread(target=churn, args=(seed,)) for seed in range(4)]
    for worker in workers:
        worker.start()
    try:
        for target in ["Legacy", "WSManager"] * 3:
            connection.switch_to(target)  # type: ignore[arg-type]
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
    assert connection.get_current_implementation() == "WSManager"
    assert exchange.wait_until(
        lambda: exchange.stats(TRADE).open == 1 and exchange.open_connections() == 1
    )
    exchange.publish(TRADE, {"after": "switches"})
    assert all(r.wait(lambda r: {"after": "switches"} in r.messages) for r in steady)


def test_legacy_reconnects_after_a_fixed_delay_and_ends_its_threads(
    exchange: FakeExchange,
) -> None:
    legacy = LegacyConnectionManager(exchange.url, reconnect_delay=0.1)
    recorder = Recorder()
    unsubscribe = legacy.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.drop(TRADE)
    assert exchange.wait_for_attempts(TRADE, 2)
    assert exchange.wait_for_open(TRADE, 1)
    unsubscribe()
    unsubscribe()
    assert legacy.connection_count == 0
    legacy.close()


def test_the_process_wide_connection_is_one_object(monkeypatch: pytest.MonkeyPatch) -> None:
    from wsmanager import connection_migration, get_binance_connection

    monkeypatch.setenv("USE_NEW_WS_MANAGER", "no")
    reset_binance_connection()
    try:
        assert get_binance_connection() is get_binance_connection()
        assert connection_migration.get_current_implementation() == "Legacy"
        connection_migration.enable_ws_manager()
        assert connection_migration.get_current_implementation() == "WSManager"
        connection_migration.enable_legacy()
        assert connection_migration.get_current_implementation() == "Legacy"
    finally:
        reset_binance_connection()


def test_legacy_close_ends_a_thread_stuck_in_a_handshake(exchange: FakeExchange) -> None:
    exchange.hang_handshakes()
    legacy = LegacyConnectionManager(exchange.url)
    legacy.subscribe(TRADE, Recorder())
    assert exchange.wait_for_attempts(TRADE, 1)
    started = time.monotonic()
    legacy.close()
    assert time.monotonic() - started < 1.0
