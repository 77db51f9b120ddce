"""The pure pieces: configuration, stream names, backoff, state aggregation, Retry-After."""

from __future__ import annotations

import random

import pytest

import wsmanager
from wsmanager import InvalidStreamNameError, WSManagerConfig, WSManagerError
from wsmanager.backoff import BackoffPolicy
from wsmanager.config import stream_url, validate_stream_name
from wsmanager.core.state import ConnectionState, aggregate_state
from wsmanager.net.boundary import is_permanent_status, parse_retry_after

URL = "wss://stream.binance.com:9443/ws/"


def test_all_names_are_importable() -> None:
    for name in wsmanager.__all__:
        assert hasattr(wsmanager, name), name


def test_defaults_match_the_contract() -> None:
    config = WSManagerConfig(url=URL)
    assert (config.max_retry_attempts, config.base_retry_delay, config.max_retry_delay) == (
        10,
        1.0,
        30.0,
    )
    assert (config.jitter_range, config.debug) == (0.5, False)
    assert (config.idle_timeout, config.cleanup_interval) == (300.0, 60.0)
    assert (config.ping_interval, config.ping_timeout, config.handshake_timeout) == (
        20.0,
        10.0,
        10.0,
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"url": "http://example.com/ws/"}, "url"),
        ({"url": "wss:///ws/"}, "url"),
        ({"url": URL + "#x"}, "url"),
        ({"url": URL + "?streams=a"}, "url"),
        ({"time_unit": "second"}, "time_unit"),
        ({"sequence_reset_threshold": 0}, "sequence_reset_threshold"),
        ({"base_retry_delay": 0}, "base_retry_delay"),
        ({"base_retry_delay": -1}, "base_retry_delay"),
        ({"max_retry_delay": 0.5}, "max_retry_delay"),
        ({"max_retry_attempts": 0}, "max_retry_attempts"),
        ({"max_retry_attempts": 2.5}, "max_retry_attempts"),
        ({"ping_timeout": 20.0}, "ping_timeout"),
        ({"ping_interval": -5}, "ping_interval"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"cleanup_interval": float("nan")}, "cleanup_interval"),
        ({"handshake_timeout": 0}, "handshake_timeout"),
        ({"max_buffered_messages": 0}, "max_buffered_messages"),
        ({"jitter_range": 2}, "jitter_range"),
    ],
)
def test_bad_configuration_names_the_argument(options: dict[str, object], named: str) -> None:
    options = {"url": URL, **options}
    with pytest.raises(ValueError, match=named):
        WSManagerConfig(**options)  # type: ignore[arg-type]


def test_none_means_forever_and_never() -> None:
    config = WSManagerConfig(url=URL, max_retry_attempts=None, idle_timeout=None)
    assert config.max_retry_attempts is None and config.idle_timeout is None


@pytest.mark.parametrize(
    "name",
    [
        "btcusdt@trade",
        "btcusdt@miniTicker",
        "!ticker@arr",
        "btcusdt@kline_1m",
        "btcusdt@depth@100ms",
        "x" * 200,
    ],
)
def test_valid_stream_names(name: str) -> None:
    assert validate_stream_name(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("btc usdt", "whitespace"),
        ("btc\tusdt", "whitespace"),
        ("btc\x00", "control"),
        ("a/b", "slash"),
        ("a?b", r"'\?'"),
        ("a#b", "'#'"),
        ("a%20", "'%'"),
        ("x" * 201, "201 characters"),
        ("btc\r\nHost: evil", "whitespace"),
        ("bt\u20ac", "'\u20ac'"),
        ("bt\u3000x", "whitespace"),
        ("bt\u200bx", "control"),
        (123, "must be a str"),
    ],
)
def test_invalid_stream_names(name: object, reason: str) -> None:
    with pytest.raises(InvalidStreamNameError, match=reason) as info:
        validate_stream_name(name)
    assert isinstance(info.value, ValueError) and isinstance(info.value, WSManagerError)


@pytest.mark.parametrize("base", ["ws://h:1/ws", "ws://h:1/ws/", "ws://h:1/ws//"])
def test_stream_url_joins_with_one_slash(base: str) -> None:
    assert stream_url(base, "btcusdt@trade") == "ws://h:1/ws/btcusdt@trade"


def test_backoff_window_doubles_and_caps() -> None:
    policy = BackoffPolicy(base_delay=1.0, max_delay=30.0)
    assert [policy.window(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert policy.window(5000) == 30.0


def test_backoff_draws_fill_the_full_jitter_window() -> None:
    policy = BackoffPolicy(base_delay=1.0, max_delay=30.0)
    rng = random.Random(7)
    draws = [policy.delay(3, rng) for _ in range(2000)]
    assert 0 <= min(draws) < 0.2 and 7.8 < max(draws) <= 8.0
    assert 3.6 < sum(draws) / len(draws) < 4.4  # uniform(0, 8) has mean 4


def test_retry_delay_preview() -> None:
    info = BackoffPolicy(0.5, 10.0).preview(4, random.Random(1))
    assert (info.attempt, info.base_delay, info.max_delay) == (4, 0.5, 10.0)
    assert (info.exponential_delay, info.capped_delay, info.max_jitter_delay) == (8.0, 8.0, 8.0)
    assert info.min_delay == 0.0 and 0.0 <= info.sample_delay <= 8.0
    assert BackoffPolicy(0.5, 10.0).preview(6).capped_delay == 10.0


def test_aggregate_state() -> None:
    c, g, d = ConnectionState.CONNECTED, ConnectionState.CONNECTING, ConnectionState.DISCONNECTED
    assert aggregate_state([]) is d
    assert aggregate_state([c, c]) is c
    assert aggregate_state([c, g]) is g
    assert ConnectionState("connected") is c and c == "connected"


def test_permanent_statuses() -> None:
    assert [
        s for s in (400, 401, 403, 404, 408, 410, 418, 429, 451, 500, 503) if is_permanent_status(s)
    ] == [400, 401, 403, 404, 410, 451]


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_the_lock_order_checker_catches_an_inversion() -> None:
    from wsmanager.core._locks import CHECKING, LockOrderError, make_lock

    assert CHECKING  # conftest turns it on for the whole suite
    registry, delivery = make_lock("registry"), make_lock("delivery")
    with registry, delivery:  # the documented order
        pass
    with delivery, pytest.raises(LockOrderError, match="'registry' while holding delivery"):
        registry.acquire()
    assert not registry.locked()
