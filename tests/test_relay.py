"""Relay -> real Redis -> RelayClient, end to end with the fake exchange: content, ids, start
positions, subscribe's semantics, sharing, back-pressure, retention gaps, metrics."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import SCALE, Recorder, wait_for
from relay_helpers import TICKER, TRADE, Seqs, assert_no_duplicates_in_order, entries

from wsmanager import Gap, InvalidStreamNameError, ManagerClosedError, WSManager
from wsmanager.relay import Relay, RelayClient, StreamKeyError
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange
from wsmanager.testing.payloads import make_payload

pytest_plugins = ("relay_fixtures",)  # fixtures: redis_server, make_relay, make_client


def _trade(t: int) -> dict[str, Any]:
    return dict(make_payload(TRADE, t), t=t)


def _active(relay: Relay, exchange: FakeExchange, *streams: str) -> None:
    assert relay.wait_for_role("active", 5 * SCALE)
    for stream in streams:
        assert exchange.wait_for_open(stream, 1, 5 * SCALE)


def _live(client: RelayClient, stream: str) -> None:
    """Wait until ``stream``'s start (``$``) is resolved: what is written from now on arrives."""
    assert wait_for(
        lambda: any(i.name == stream and i.last_id is not None for i in client.get_stream_info())
    )


def test_messages_go_through_redis_unchanged(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    redis_server: RedisServer,
) -> None:
    relay = make_relay(TRADE, TICKER, maxlen=1000)
    _active(relay, exchange, TRADE, TICKER)
    client = make_client(start="0")
    trades, tickers = Seqs(field=""), Seqs(field="")
    client.subscribe(TRADE, trades)
    client.subscribe(TICKER, tickers)
    sent_trades = [_trade(100 + i) for i in range(30)]
    sent_tickers = [dict(make_payload(TICKER, i), E=1_700_000_000_000 + i) for i in range(30)]
    for trade, ticker in zip(sent_trades, sent_tickers, strict=True):
        exchange.publish(TRADE, trade)
        exchange.publish(TICKER, ticker)
    assert trades.wait_count(30) and tickers.wait_count(30)
    assert trades.snapshot() == sent_trades
    assert tickers.snapshot() == sent_tickers
    assert trades.threads == {"wsmanager-dispatch-relay-client"}

    # In Redis: one key per stream, field "data" = the payload's JSON; trade ids = trade ids.
    stored = entries(redis_server.url, "wsmanager:" + TRADE)
    assert [entry_id for entry_id, _ in stored] == [f"{t['t']}-0".encode() for t in sent_trades]
    assert [json.loads(fields[b"data"]) for _, fields in stored] == sent_trades
    ticker_ids = [entry_id for entry_id, _ in entries(redis_server.url, "wsmanager:" + TICKER)]
    assert len(ticker_ids) == 30 and len(set(ticker_ids)) == 30

    metrics = relay.get_metrics()
    assert metrics.entries_written == 60 and metrics.messages_received == 60
    assert metrics.dropped_entries == 0 and metrics.role == "active"
    client_metrics = client.get_metrics()
    assert client_metrics.entries_received == 60 and client_metrics.gaps == 0
    assert relay.health().healthy and client.health().healthy


def test_repeated_sequence_numbers_are_written_once(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    redis_server: RedisServer,
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    for t in (1, 2, 2, 3, 1, 4):
        exchange.publish(TRADE, _trade(t))
    # The manager drops the repeats (sequence numbers); the relay's own check is for takeovers.
    assert wait_for(lambda: relay.get_metrics().messages_received == 4)
    assert relay.flush(5)
    stored = entries(redis_server.url, "wsmanager:" + TRADE)
    assert [json.loads(fields[b"data"])["t"] for _, fields in stored] == [1, 2, 3, 4]


def test_maxlen_bounds_each_stream(
    exchange: FakeExchange, make_relay: Callable[..., Relay], redis_server: RedisServer
) -> None:
    relay = make_relay(TRADE, maxlen=10)
    _active(relay, exchange, TRADE)
    for t in range(1, 1001):
        exchange.publish(TRADE, _trade(t))
    assert wait_for(lambda: relay.get_metrics().messages_received == 1000)
    assert relay.flush(5)
    stored = entries(redis_server.url, "wsmanager:" + TRADE)
    # MAXLEN ~ trims whole nodes (100 entries by default): at most ~ maxlen + a node remain.
    assert 10 <= len(stored) <= 10 + 100
    assert stored[-1][0] == b"1000-0"


def test_start_positions(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    for t in range(1, 11):
        exchange.publish(TRADE, _trade(t))
    assert wait_for(lambda: relay.get_metrics().entries_written == 10)

    client = make_client()
    new_only, oldest, after_five = Seqs(), Seqs(), Seqs()
    client.subscribe(TRADE, new_only)
    _live(client, TRADE)
    client.subscribe("btcusdt@trade", oldest)  # shared: same start as the first
    other = make_client(start="0")
    other.subscribe(TRADE, oldest_only := Seqs())
    third = make_client()
    third.subscribe(TRADE, after_five, start="5-0")
    for t in range(11, 14):
        exchange.publish(TRADE, _trade(t))
    assert new_only.wait_count(3) and oldest.wait_count(3)
    assert oldest_only.wait_count(13) and after_five.wait_count(8)
    assert new_only.snapshot() == [11, 12, 13] == oldest.snapshot()
    assert oldest_only.snapshot() == list(range(1, 14))
    assert after_five.snapshot() == list(range(6, 14))


def test_subscribe_semantics(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    before = set(threading.enumerate())
    client = make_client(start="0")
    first, second = Recorder(), Recorder()
    quitter_got: list[int] = []
    unsubscribe_quitter: list[Callable[[], None]] = []

    def quitter(message: Any) -> None:
        quitter_got.append(message["t"])
        if len(quitter_got) == 3:
            unsubscribe_quitter[0]()
            unsubscribe_quitter[0]()  # idempotent, inside a callback

    def raiser(message: Any) -> None:
        raise RuntimeError("a broken subscriber")

    client.subscribe(TRADE, first, on_complete=first.on_complete)
    client.subscribe(TRADE, raiser)
    unsubscribe_second = client.subscribe(TRADE, second, on_complete=second.on_complete)
    unsubscribe_quitter.append(client.subscribe(TRADE, quitter))
    for stream in ("a@trade", "b@trade", "c@trade"):
        client.subscribe(stream, Recorder())
    for t in range(1, 11):
        exchange.publish(TRADE, _trade(t))
    assert first.wait_messages(10) and second.wait_messages(10)
    assert quitter_got == [1, 2, 3]
    assert [m["t"] for m in first.messages] == list(range(1, 11))
    assert client.get_metrics().callback_errors == 10
    # Two threads per client, whatever the number of streams; never the caller's.
    added = [t.name for t in threading.enumerate() if t not in before]
    mine = ("wsmanager-dispatch-relay-client", "wsmanager-relay-client-reader")
    added = [name for name in added if name in mine or not name.startswith("wsmanager-dispatch")]
    assert sorted(added) == ["wsmanager-dispatch-relay-client", "wsmanager-relay-client-reader"]
    assert first.threads == {"wsmanager-dispatch-relay-client"}

    unsubscribe_second()
    unsubscribe_second()
    with pytest.raises(ValueError, match="start"):
        client.subscribe(TRADE, Recorder(), start="0")
    with pytest.raises(InvalidStreamNameError):
        client.subscribe("bad name", Recorder())
    with pytest.raises(TypeError, match="callback"):
        client.subscribe(TRADE, "not callable")  # type: ignore[arg-type]
    assert client.get_metrics().subscribers == 5
    client.close()
    client.close()
    assert first.completed == 1 and second.completed == 0
    with pytest.raises(ManagerClosedError):
        client.subscribe(TRADE, Recorder())
    assert not client.health().healthy


def test_many_clients_on_one_stream(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    recorders = []
    for _ in range(6):
        client = make_client(start="0")
        for _ in range(3):
            recorders.append(Seqs())
            client.subscribe(TRADE, recorders[-1])
    exchange.set_rate(500)
    assert all(r.wait_count(300, 10) for r in recorders)
    exchange.set_rate(0)
    for recorder in recorders:
        values = recorder.snapshot()
        assert_no_duplicates_in_order(values)
        common = min(len(r.values) for r in recorders)
        assert values[:common] == recorders[0].snapshot()[:common]


def test_lagging_callbacks_pause_reading_and_lose_nothing(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    client = make_client(start="0", max_buffered=5, count=4)
    seen: list[int] = []
    most_buffered = 0
    slow = threading.Event()

    def callback(message: Any) -> None:
        nonlocal most_buffered
        seen.append(message["t"])
        most_buffered = max(most_buffered, client.get_metrics().buffered_messages)
        slow.wait(0.002)  # a callback doing some work

    client.subscribe(TRADE, callback)
    for t in range(1, 301):
        exchange.publish(TRADE, _trade(t))
    assert wait_for(lambda: len(seen) == 300, 20)
    assert seen == list(range(1, 301))
    metrics = client.get_metrics()
    assert metrics.backpressure_pauses > 0 and metrics.gaps == 0
    assert most_buffered <= 5 - 1 + 4  # the bound, plus at most one read


def test_entries_trimmed_before_reading_are_reported_as_a_gap(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE, maxlen=10)
    _active(relay, exchange, TRADE)
    client = make_client(start="0", max_buffered=2, count=2)
    gaps: list[Gap] = []
    client.on_gap(gaps.append)
    release = threading.Event()
    seen = Seqs()

    def callback(message: Any) -> None:
        release.wait(10 * SCALE)  # stuck until the relay has written far past retention
        seen(message)

    client.subscribe(TRADE, callback)
    exchange.publish(TRADE, _trade(1))
    assert wait_for(lambda: client.get_metrics().entries_received == 1)
    for t in range(2, 1001):
        exchange.publish(TRADE, _trade(t))
    assert wait_for(lambda: relay.get_metrics().entries_written == 1000)
    release.set()
    assert seen.wait_for_value(1000, 10)
    values = seen.snapshot()
    assert_no_duplicates_in_order(values)
    assert len(gaps) == 1, (gaps, values[:20])
    gap = gaps[0]
    assert gap.stream == TRADE and not gap.after_reconnect
    assert values[values.index(gap.received) - 1] < gap.expected <= gap.received
    assert values[values.index(gap.received) - 1] == gap.expected - 1
    assert client.get_metrics().gaps == 1
    assert client.get_stream_info()[0].gaps == 1


def test_a_key_that_is_not_a_stream_fails_that_stream_only(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    redis_server: RedisServer,
) -> None:
    admin = redis.Redis.from_url(redis_server.url)
    admin.set("wsmanager:bad@trade", "not a stream")
    admin.close()
    relay = make_relay(TRADE, "bad@trade")
    _active(relay, exchange, TRADE, "bad@trade")
    client = make_client(start="0")
    good, bad = Recorder(), Recorder()
    client.subscribe(TRADE, good)
    client.subscribe("bad@trade", bad, on_error=bad.on_error)
    assert bad.wait(lambda r: len(r.errors) == 1)
    assert isinstance(bad.errors[0], StreamKeyError)
    assert "holds a string" in str(bad.errors[0])
    exchange.publish(TRADE, _trade(1))
    exchange.publish("bad@trade", _trade(1))
    assert good.wait_messages(1)
    assert wait_for(lambda: relay.get_metrics().write_errors == 1)
    assert relay.get_metrics().entries_written == 1


def test_relay_validates_its_options(redis_server: RedisServer, exchange: FakeExchange) -> None:
    with pytest.raises(ValueError, match="redis_url"):
        Relay("http://x", url=exchange.url)
    with pytest.raises(ValueError, match="maxlen"):
        Relay(redis_server.url, url=exchange.url, maxlen=0)
    with pytest.raises(ValueError, match="lease_ttl"):
        Relay(redis_server.url, url=exchange.url, lease_ttl=-1)
    with pytest.raises(InvalidStreamNameError):
        Relay(redis_server.url, ["bad name"], url=exchange.url)
    with pytest.raises(ValueError, match="url"):
        Relay(redis_server.url, [TRADE], url="http://not-ws")
    with pytest.raises(ValueError, match="start"):
        RelayClient(redis_server.url, start="latest")
    with pytest.raises(ValueError, match="block"):
        RelayClient(redis_server.url, block=10, redis_timeout=1)


def test_metrics_endpoint_for_relay_and_client(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
) -> None:
    import urllib.request

    from wsmanager.monitoring import serve_metrics

    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    client = make_client(start="0")
    client.subscribe(TRADE, got := Seqs())
    exchange.publish(TRADE, _trade(1))
    assert got.wait_count(1)
    for source, counter in (
        (relay, "ws_relay_entries_written_total 1.0"),
        (client, "ws_relay_client_entries_received_total 1.0"),
    ):
        with serve_metrics(source, port=0) as server:  # type: ignore[arg-type]
            with urllib.request.urlopen(server.url, timeout=5) as response:
                document = json.loads(response.read())
                assert response.status == 200
            assert document["status"] == "healthy"
            with urllib.request.urlopen(server.url + "?format=prometheus", timeout=5) as response:
                text = response.read().decode()
        assert counter in text, text
    assert document["metrics"]["implementation"] == "RelayClient"
    text = relay.get_prometheus_metrics()
    assert 'ws_relay_role{role="active"} 1.0' in text
    assert 'ws_manager_messages_received_total{manager="relay"} 1.0' in text
    assert 'ws_relay_stream_entries_written_total{stream="btcusdt@trade"} 1.0' in text


def test_streams_added_and_removed_while_relaying(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    relay.add_stream("ethusdt@trade")
    relay.add_stream("ethusdt@trade")  # no-op
    assert relay.streams == [TRADE, "ethusdt@trade"]
    assert exchange.wait_for_open("ethusdt@trade")
    client = make_client(start="0")
    eth = Seqs()
    client.subscribe("ethusdt@trade", eth)
    exchange.publish("ethusdt@trade", _trade(7))
    assert eth.wait_count(1)
    relay.remove_stream(TRADE)
    relay.remove_stream(TRADE)
    assert relay.streams == ["ethusdt@trade"]
    assert exchange.wait_until(lambda: exchange.stats(TRADE).open == 0)
    assert wait_for(lambda: relay.get_metrics().streams == 1)
    assert relay.key(TRADE) == "wsmanager:btcusdt@trade"


def test_a_stream_the_exchange_refuses_makes_the_relay_unhealthy(
    exchange: FakeExchange, make_relay: Callable[..., Relay]
) -> None:
    exchange.reject(404, stream="nosuch@trade")
    relay = make_relay(TRADE, "nosuch@trade")
    _active(relay, exchange, TRADE)
    assert wait_for(lambda: relay.get_metrics().failed_streams == 1)
    health = relay.health()
    assert not health.healthy and "nosuch@trade" in " ".join(health.reasons)
    assert relay.streams == [TRADE]


def test_closing_while_redis_is_down_does_not_wait(
    exchange: FakeExchange, make_relay: Callable[..., Relay], redis_server: RedisServer
) -> None:
    relay = make_relay(TRADE)
    _active(relay, exchange, TRADE)
    redis_server.kill()
    exchange.publish(TRADE, _trade(1))
    assert wait_for(lambda: not relay.get_metrics().redis_connected)
    started = time.monotonic()
    relay.close()
    assert time.monotonic() - started < 1.0 * SCALE
    assert not relay.health().healthy
