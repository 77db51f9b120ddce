"""Issue 17, finding 5: no thread the library starts dies of user code or of what a server sends.

Each test goes through the public API against real servers (the fake exchange, redis-server).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import SCALE, Recorder, wait_for

from wsmanager import ConnectionState, WSManager
from wsmanager.relay import RelayClient
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange

pytest_plugins = ("relay_fixtures",)  # fixtures: redis_server, make_relay, make_client

MakeManager = Callable[..., WSManager]
TRADE = "btcusdt@trade"


def _exit_off_the_main_thread(*_: object) -> None:
    """``sys.exit()`` in a callback the library runs on a thread of its own."""
    if threading.current_thread() is not threading.main_thread():
        sys.exit(1)


def test_a_status_listener_calling_sys_exit_does_not_stop_the_supervisor(
    exchange: FakeExchange, manager_for: MakeManager
) -> None:
    exchange.set_rate(20)  # not idle until silenced below
    manager = manager_for(exchange, idle_timeout=0.5 * SCALE, cleanup_interval=0.1 * SCALE)
    states: list[ConnectionState] = []
    manager.on_connection_status(_exit_off_the_main_thread)
    manager.on_connection_status(states.append)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, on_complete=recorder.on_complete)
    assert exchange.wait_for_open(TRADE, 1, 5 * SCALE)
    assert wait_for(lambda: states[-1:] == [ConnectionState.CONNECTED])
    # A handover completes (the supervisor finishes it: the old connection closes) ...
    exchange.server_shutdown(enveloped=True)
    assert wait_for(lambda: manager.get_metrics().rotations == 1)
    assert exchange.wait_until(  # the replacement opened and the old connection closed
        lambda: (
            len(exchange.connections(open_only=False)) >= 2 and len(exchange.connections()) == 1
        ),
        5 * SCALE,
    )
    # ... status is still delivered after the listener's sys.exit() ...
    exchange.drop()
    assert wait_for(lambda: states.count(ConnectionState.CONNECTED) >= 2), states
    # ... and the idle sweep still runs.
    exchange.silence(TRADE)
    assert recorder.wait(lambda r: r.completed == 1)
    assert manager.get_metrics().callback_errors >= 2


def test_an_order_book_whose_on_update_exits_on_the_worker_resyncs_again(
    make_manager: MakeManager,
) -> None:
    with FakeExchange(rate=20 / SCALE, seed=3) as exchange:
        manager = make_manager(url=exchange.url, streams_per_connection=200)
        book = manager.order_book("BTCUSDT", exchange.rest_url, limit=100)
        book.on_update(_exit_off_the_main_thread)  # every call off the main thread exits
        assert book.wait_synced(5 * SCALE)
        for resyncs in (1, 2):
            exchange.skip("btcusdt@depth@100ms", 5)
            assert wait_for(lambda n=resyncs: book.resyncs >= n and book.synced, 10)  # type: ignore[misc]
        assert book.stats().callback_errors > 0
        assert manager.get_metrics().callback_errors >= book.stats().callback_errors
        book.close()


def _add(redis_server: RedisServer, stream: str, *payloads: Any, raw: bytes | None = None) -> None:
    with redis.Redis.from_url(redis_server.url) as connection:
        key = "wsmanager:" + stream
        if raw is not None:
            connection.xadd(key, {"data": raw})
        for payload in payloads:
            connection.xadd(key, {"data": json.dumps(payload)})


def test_a_relay_client_callback_calling_sys_exit_stops_nothing(
    redis_server: RedisServer, make_client: Callable[..., RelayClient]
) -> None:
    client = make_client(start="0")
    survivor = Recorder()
    client.subscribe(TRADE, _exit_off_the_main_thread)
    client.subscribe(TRADE, survivor)
    _add(redis_server, TRADE, *({"t": n} for n in range(6)))
    assert survivor.wait_messages(6)
    assert [m["t"] for m in survivor.messages] == list(range(6))
    assert client.get_metrics().callback_errors == 6
    _add(redis_server, TRADE, {"t": 6})
    assert survivor.wait_messages(7)


def test_a_deeply_nested_relay_entry_is_invalid_and_the_stream_goes_on(
    redis_server: RedisServer,
    make_client: Callable[..., RelayClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wsmanager.relay import entries

    monkeypatch.setattr(entries, "decode_data", entries._decode_stdlib)
    for module in list(sys.modules.values()):  # wherever the client took it from
        if getattr(module, "__name__", "").startswith("wsmanager.relay.") and hasattr(
            module, "decode_data"
        ):
            monkeypatch.setattr(module, "decode_data", entries._decode_stdlib)
    client = make_client(start="0")
    first, second = Recorder(), Recorder()
    client.subscribe(TRADE, first)
    client.subscribe(TRADE, second)
    _add(redis_server, TRADE, raw=b"[" * 100_000 + b"]" * 100_000)
    _add(redis_server, TRADE, raw=b'{"t": "\xff\xfe"}')  # not UTF-8
    _add(redis_server, TRADE, *({"t": n} for n in range(6)))
    assert first.wait_messages(6) and second.wait_messages(6)
    metrics = client.get_metrics()
    assert metrics.invalid_messages == 2 and metrics.callback_errors == 0
    assert client.health().healthy
