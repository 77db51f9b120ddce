"""Fixtures of the relay tests (``pytest_plugins = ("relay_fixtures",)``): a real redis-server
per test, and relays and relay clients closed at the end of the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE
from relay_helpers import require_redis_server

from wsmanager.relay import Relay, RelayClient
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange

__all__ = ["make_client", "make_relay", "redis_server"]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_relay(redis_server: RedisServer, exchange: FakeExchange) -> Iterator[Callable[..., Relay]]:
    relays: list[Relay] = []

    def make(*streams: str, **options: Any) -> Relay:
        options.setdefault("url", exchange.url)
        options.setdefault("manager_options", FAST)
        options.setdefault("lease_ttl", 1.0 * SCALE)
        options.setdefault("base_retry_delay", 0.05 * SCALE)
        options.setdefault("max_retry_delay", 0.2 * SCALE)
        options.setdefault("redis_timeout", 2.0 * SCALE)
        relay = Relay(options.pop("redis_url", redis_server.url), streams, **options)
        relays.append(relay)
        return relay

    yield make
    for relay in relays:
        relay.close()


@pytest.fixture
def make_client(redis_server: RedisServer) -> Iterator[Callable[..., RelayClient]]:
    clients: list[RelayClient] = []

    def make(**options: Any) -> RelayClient:
        options.setdefault("base_retry_delay", 0.05 * SCALE)
        options.setdefault("max_retry_delay", 0.2 * SCALE)
        options.setdefault("redis_timeout", 2.0 * SCALE)
        client = RelayClient(options.pop("redis_url", redis_server.url), **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
