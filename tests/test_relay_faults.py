"""The relay's failure drills, with a real redis-server, the fake exchange and real processes.

Each drill compares what a RelayClient delivered with what a witness (a plain WSManager on the
same exchange) received: entries lost and duplicated must both be 0 where the design promises
it. Figures are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable

import redis
from conftest import SCALE, wait_for
from relay_helpers import TICKER, TRADE, RelayProcess, Seqs, assert_no_duplicates_in_order

from wsmanager import WSManager
from wsmanager.relay import Relay, RelayClient
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange
from wsmanager.testing.faultproxy import FaultProxy, Mode

pytest_plugins = ("relay_fixtures",)


def _witness(make_manager: Callable[..., WSManager], *streams: str) -> dict[str, Seqs]:
    manager = make_manager()
    seen = {}
    for stream in streams:
        seen[stream] = Seqs(field="t" if stream == TRADE else "")
        manager.subscribe(stream, seen[stream])
    return seen


def _relaying(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_manager: Callable[..., WSManager],
) -> tuple[Relay, Seqs]:
    """An active relay of TRADE, and a direct subscriber of TRADE to compare against."""
    relay = make_relay(TRADE)
    witness = _witness(make_manager, TRADE)[TRADE]
    assert exchange.wait_for_open(TRADE, 2) and relay.wait_for_role("active", 5 * SCALE)
    return relay, witness


def _drill(name: str, **figures: object) -> None:
    print(f"\nDRILL {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def _settle(relay: Relay, got: Seqs, witness: Seqs) -> list[int]:
    """Stop the feed, let everything reach the client; the witness' values from the client's
    first on (the client starts at the relay's first entry)."""
    assert relay.flush(10 * SCALE)
    last = witness.snapshot()[-1]
    assert got.wait_for_value(last, 10), (got.snapshot()[-5:], last)
    expected = witness.snapshot()
    return expected[expected.index(got.snapshot()[0]) :]


def test_redis_killed_mid_feed_and_restarted_from_its_aof(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
    redis_server: RedisServer,
) -> None:
    relay, witness = _relaying(exchange, make_relay, make_manager)
    client = make_client(start="0")
    got = Seqs()
    client.subscribe(TRADE, got)
    exchange.set_rate(200)
    assert got.wait_count(50)
    redis_server.kill()  # kill -9, mid-feed
    killed_at = len(witness.snapshot())
    assert witness.wait_count(killed_at + 60)  # the feed goes on while Redis is dead
    restarted = time.monotonic()
    redis_server.start()
    before = len(got.snapshot())
    assert got.wait_count(before + 1, 10)
    resumed_after = time.monotonic() - restarted
    assert witness.wait_count(len(witness.snapshot()) + 60)
    exchange.set_rate(0)
    expected = _settle(relay, got, witness)
    values = got.snapshot()
    assert_no_duplicates_in_order(values)
    assert values == expected
    assert relay.get_metrics().dropped_entries == 0
    assert relay.get_metrics().redis_reconnects >= 1
    assert client.get_metrics().reconnects >= 1 and client.get_metrics().gaps == 0
    _drill(
        "redis kill -9 + AOF restart",
        delivered=len(values),
        lost=len(expected) - len(values),
        duplicates=len(values) - len(set(values)),
        client_resumed_after_s=round(resumed_after, 3),
    )


def test_redis_down_for_5s_bounded_buffer_drops_counted(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
    redis_server: RedisServer,
) -> None:
    relay = make_relay(TRADE, buffer_size=100, batch_size=10)
    witness = _witness(make_manager, TRADE)[TRADE]
    assert exchange.wait_for_open(TRADE, 2) and relay.wait_for_role("active", 5 * SCALE)
    client = make_client(start="0")
    got = Seqs()
    client.subscribe(TRADE, got)
    exchange.set_rate(200)
    assert got.wait_count(20)
    redis_server.kill()
    down = time.monotonic()
    assert wait_for(lambda: "unreachable" in " ".join(relay.health().reasons), 5)
    most_buffered = 0
    while time.monotonic() - down < 5.0 * SCALE:  # Redis stays down 5 s; the relay keeps up
        most_buffered = max(most_buffered, relay.get_metrics().buffered_entries)
        assert witness.wait_count(len(witness.snapshot()) + 1, 2)
    metrics = relay.get_metrics()
    assert metrics.dropped_entries > 0 and most_buffered <= 100 + 10  # + the failed batch
    assert "buffer full" in " ".join(relay.health().reasons)
    redis_server.start()
    assert wait_for(lambda: relay.health().healthy, 10)
    assert witness.wait_count(len(witness.snapshot()) + 40)
    exchange.set_rate(0)
    expected = _settle(relay, got, witness)
    values = got.snapshot()
    assert_no_duplicates_in_order(values)
    missing = set(expected) - set(values)
    metrics = relay.get_metrics()
    assert len(missing) == metrics.dropped_entries  # every loss counted, nothing else lost
    assert not set(values) - set(expected)
    _drill(
        "redis down 5 s",
        buffer_size=100,
        most_buffered=most_buffered,
        dropped_counted=metrics.dropped_entries,
        missing_at_client=len(missing),
        duplicates=len(values) - len(set(values)),
        redis_errors=metrics.redis_errors,
    )


def test_client_connection_cut_resets_and_blackhole(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
    redis_server: RedisServer,
) -> None:
    relay, witness = _relaying(exchange, make_relay, make_manager)
    with FaultProxy(redis_server.port) as proxy:
        client = make_client(
            redis_url=f"redis://127.0.0.1:{proxy.port}/0", start="0", redis_timeout=0.5 * SCALE
        )
        got = Seqs()
        client.subscribe(TRADE, got)
        exchange.set_rate(200)
        for _ in range(4):  # cut (RST) while data flows
            assert got.wait_count(len(got.snapshot()) + 30)
            proxy.reset()
        proxy.refuse(True)  # down for a while: connection attempts fail
        proxy.reset()
        assert witness.wait_count(len(witness.snapshot()) + 100)
        proxy.refuse(False)
        assert got.wait_count(len(got.snapshot()) + 30, 10)
        proxy.set_mode(Mode.BLACKHOLE)  # half-open: nothing comes back, no FIN
        assert wait_for(lambda: not client.get_metrics().redis_connected, 5)
        proxy.set_mode(Mode.PASS)
        proxy.reset()
        assert got.wait_count(len(got.snapshot()) + 30, 10)
        admin = redis.Redis.from_url(redis_server.url)
        admin.client_kill_filter(_type="normal", skipme=True)  # CLIENT KILL: relay and client
        admin.close()
        assert witness.wait_count(len(witness.snapshot()) + 40)
        exchange.set_rate(0)
        expected = _settle(relay, got, witness)
        values = got.snapshot()
        assert_no_duplicates_in_order(values)
        assert values == expected
        metrics = client.get_metrics()
        assert proxy.accepted >= 6  # every cut made it connect again
        assert metrics.reconnects >= 2 and metrics.gaps == 0  # refused, blackhole: seen as down
        _drill(
            "client connection cut (4 RST, refused, blackhole, CLIENT KILL)",
            delivered=len(values),
            lost=len(expected) - len(values),
            duplicates=len(values) - len(set(values)),
            client_connections=proxy.accepted,
        )
        client.close()


def test_standby_takes_over_when_the_active_relay_is_killed(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
    redis_server: RedisServer,
) -> None:
    ttl = 1.0 * SCALE
    active = RelayProcess(redis_server.url, exchange.url, TRADE, TICKER, "--lease-ttl", str(ttl))
    try:
        active.wait_for_line("wsmanager relay: active")
        standby = make_relay(TRADE, TICKER, lease_ttl=ttl)
        assert standby.wait_for_role("standby", 5 * SCALE)
        witness = _witness(make_manager, TRADE, TICKER)
        assert exchange.wait_for_open(TRADE, 3) and exchange.wait_for_open(TICKER, 3)
        client = make_client(start="0")
        trades, tickers = Seqs(), Seqs(field="")
        client.subscribe(TRADE, trades)
        client.subscribe(TICKER, tickers)
        exchange.set_rate(100)
        assert trades.wait_count(50) and tickers.wait_count(50)
        killed = time.monotonic()
        active.kill()
        assert standby.wait_for_role("active", 5 * ttl)
        takeover = time.monotonic() - killed
        assert takeover <= ttl + ttl / 10 + 0.3 * SCALE, takeover
        assert trades.wait_count(len(trades.snapshot()) + 50)
        exchange.set_rate(0)
        expected_trades = _settle(standby, trades, witness[TRADE])
        values = trades.snapshot()
        assert_no_duplicates_in_order(values)
        assert values == expected_trades
        assert tickers.wait(lambda v: bool(v) and v[-1] == witness[TICKER].snapshot()[-1])
        ticker_values = [json.dumps(t, sort_keys=True) for t in tickers.snapshot()]
        assert len(ticker_values) == len(set(ticker_values))  # no duplicate across the switch
        expected_tickers = [json.dumps(t, sort_keys=True) for t in witness[TICKER].snapshot()]
        expected_tickers = expected_tickers[expected_tickers.index(ticker_values[0]) :]
        assert ticker_values == expected_tickers
        metrics = standby.get_metrics()
        assert metrics.lease_acquisitions == 1 and metrics.duplicates_skipped > 0
        _drill(
            "active relay kill -9, standby takes over",
            lease_ttl_s=ttl,
            takeover_s=round(takeover, 3),
            trades_lost=len(expected_trades) - len(values),
            trade_duplicates=len(values) - len(set(values)),
            tickers_lost=len(expected_tickers) - len(ticker_values),
            ticker_duplicates=len(ticker_values) - len(set(ticker_values)),
            skipped_as_already_written=metrics.duplicates_skipped,
        )
    finally:
        active.close()


def test_closing_the_active_relay_hands_over_at_once(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    make_manager: Callable[..., WSManager],
) -> None:
    ttl = 5.0 * SCALE
    first = make_relay(TRADE, lease_ttl=ttl)
    assert first.wait_for_role("active", 5 * SCALE)
    second = make_relay(TRADE, lease_ttl=ttl)
    assert second.wait_for_role("standby", 5 * SCALE)
    witness = _witness(make_manager, TRADE)[TRADE]
    assert exchange.wait_for_open(TRADE, 3)
    client = make_client(start="0")
    got = Seqs()
    client.subscribe(TRADE, got)
    exchange.set_rate(100)
    assert got.wait_count(30)
    closed = time.monotonic()
    first.close()
    assert second.wait_for_role("active", ttl)
    handover = time.monotonic() - closed
    assert handover < ttl / 2  # released, not expired
    assert got.wait_count(len(got.snapshot()) + 30)
    exchange.set_rate(0)
    expected = _settle(second, got, witness)
    assert got.snapshot() == expected


def test_a_relay_that_lost_its_lease_cannot_write(
    exchange: FakeExchange,
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    redis_server: RedisServer,
) -> None:
    relay = make_relay(TRADE)
    assert relay.wait_for_role("active", 5 * SCALE) and exchange.wait_for_open(TRADE)
    admin = redis.Redis.from_url(redis_server.url)
    try:
        lease = "wsmanager:relay:default:lease"
        assert admin.exists(lease)
        for t in range(1, 4):
            exchange.publish(TRADE, {"e": "trade", "t": t})
        assert wait_for(lambda: relay.get_metrics().messages_received == 3)
        assert relay.flush(5) and admin.xlen("wsmanager:" + TRADE) == 3
        admin.set(lease, "another relay", px=60_000)  # as if another relay had taken it
        for t in range(4, 8):
            exchange.publish(TRADE, {"e": "trade", "t": t})
        assert relay.wait_for_role("standby", 5 * SCALE)
        assert wait_for(lambda: relay.get_metrics().messages_received == 7)
        assert admin.xlen("wsmanager:" + TRADE) == 3  # fenced: nothing written meanwhile
        admin.delete(lease)  # the other one is gone: this relay takes over, writes its buffer
        assert relay.wait_for_role("active", 5 * SCALE)
        assert relay.flush(5)
        stored = admin.xrange("wsmanager:" + TRADE)
        assert [entry_id for entry_id, _ in stored] == [f"{t}-0".encode() for t in range(1, 8)]
    finally:
        admin.close()


def test_a_client_in_another_process(
    exchange: FakeExchange, make_relay: Callable[..., Relay], redis_server: RedisServer
) -> None:
    relay = make_relay(TRADE)
    assert relay.wait_for_role("active", 5 * SCALE) and exchange.wait_for_open(TRADE)
    script = textwrap.dedent(f"""
        import sys, threading
        from wsmanager.relay import RelayClient
        done = threading.Event()
        seen = []
        def on_message(message):
            seen.append(message["t"])
            if len(seen) == 200:
                done.set()
        with RelayClient({redis_server.url!r}, start="0") as client:
            client.subscribe({TRADE!r}, on_message)
            print("subscribed", flush=True)
            assert done.wait(30)
        print(" ".join(map(str, seen)))
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "subscribed"
        for t in range(1, 201):
            exchange.publish(TRADE, {"e": "trade", "t": t})
        out, err = process.communicate(timeout=30 * SCALE)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert [int(t) for t in out.split()] == list(range(1, 201))


def test_the_relay_command(exchange: FakeExchange, redis_server: RedisServer) -> None:
    process = RelayProcess(
        redis_server.url, exchange.url, TRADE, "--metrics-port", "0", "--lease-ttl", "1"
    )
    try:
        url = process.wait_for_line("metrics at").rsplit(" ", 1)[1].strip()
        process.wait_for_line("wsmanager relay: active")
        assert exchange.wait_for_open(TRADE)
        exchange.publish(TRADE, {"e": "trade", "t": 42})
        admin = redis.Redis.from_url(redis_server.url)
        try:
            assert wait_for(lambda: admin.xlen("wsmanager:" + TRADE) == 1)
            with urllib.request.urlopen(url, timeout=5) as response:
                document = json.loads(response.read())
            assert document["status"] == "healthy"
            assert document["metrics"]["entriesWritten"] == 1
            assert document["metrics"]["role"] == "active"
            os.kill(process.process.pid, signal.SIGTERM)
            assert process.process.wait(10 * SCALE) == 0
            assert "1 entries written" in process.wait_for_line("stopped")
            assert not admin.exists("wsmanager:relay:default:lease")  # released on the way out
        finally:
            admin.close()
    finally:
        process.close()
    for args, message in (
        ((), "no streams"),
        (("bad name",), "whitespace"),
        ((TRADE, "--maxlen", "0"), "maxlen"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "wsmanager", "relay", "--redis", redis_server.url, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 2 and message in result.stderr, result.stderr
