"""The fake exchange's rules (opt-in), each enforced and recorded, with plain clients; and nothing
recorded when the client behaves."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from conftest import SCALE
from test_fake_exchange import (
    TRADE,
    handshake_refusal,
    raw_upgrade,
    recv_json,
    request,
    ws_client,
)
from websockets.exceptions import ConnectionClosed

from wsmanager.testing import BINANCE_SPOT_RULES, ExchangeRules, FakeExchange, Violation


@pytest.fixture
def binance() -> Iterator[FakeExchange]:
    with FakeExchange(rules=BINANCE_SPOT_RULES, seed=3) as fake:
        yield fake


def kinds(exchange: FakeExchange) -> list[str]:
    return [v.kind for v in exchange.violations()]


def test_the_published_numbers() -> None:
    rules = BINANCE_SPOT_RULES
    assert rules.max_client_messages_per_second == 5
    assert rules.max_streams_per_connection == 1024
    assert rules.connection_attempts == (300, 300.0)
    assert rules.max_connection_age == 86_400.0
    assert (rules.server_ping_interval, rules.pong_timeout) == (20.0, 60.0)
    assert rules.max_request_line == 8192 and rules.enforce
    assert ExchangeRules.binance(max_connection_age=1.0).max_streams_per_connection == 1024


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"max_client_messages_per_second": 0}, "max_client_messages_per_second"),
        ({"max_client_messages_per_second": 2.5}, "max_client_messages_per_second"),
        ({"max_connection_age": -1.0}, "max_connection_age"),
        ({"pong_timeout": float("nan")}, "pong_timeout"),
        ({"connection_attempts": (300,)}, "connection_attempts"),
        ({"connection_attempts": (0, 300.0)}, "connection_attempts"),
        ({"ban_seconds": 0}, "ban_seconds"),
        ({"enforce": "yes"}, "enforce"),
    ],
)
def test_bad_rules_are_named(changes: dict[str, object], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        ExchangeRules(**changes)  # type: ignore[arg-type]


# -- client messages per second ------------------------------------------------------------------


def test_more_than_5_client_messages_in_a_second_disconnects(binance: FakeExchange) -> None:
    with ws_client(binance.combined_url(TRADE)) as ws:
        request(ws, "LIST_SUBSCRIPTIONS")
        ws.ping(b"1")
        ws.ping(b"2")
        ws.pong(b"3")
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}))  # the 6th
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=3 * SCALE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    (violation,) = binance.violations()
    assert violation.kind == "client_messages" and "6" in violation.detail
    assert violation.connection_id == binance.connections(open_only=False)[0].id


def test_paced_client_messages_are_fine(binance: FakeExchange) -> None:
    with ws_client(binance.combined_url()) as ws:
        started = time.monotonic()
        for i in range(9):  # under 3 a second: 0.35 s apart, text and pings
            while time.monotonic() < started + i * 0.35:
                time.sleep(0.01)  # pacing the client: what this test is about
            if i % 2:
                ws.ping(str(i).encode())
            else:
                assert request(ws, "LIST_SUBSCRIPTIONS", id=i) == {"result": [], "id": i}
        assert binance.wait_until(lambda: binance.connections()[0].client_messages == 9)
    assert binance.violations() == []


# -- streams per connection ----------------------------------------------------------------------


def test_1024_streams_per_connection_then_an_error(binance: FakeExchange) -> None:
    streams = [f"s{i}@trade" for i in range(1024)]
    with ws_client(binance.combined_url()) as ws:
        assert request(ws, "SUBSCRIBE", streams) == {"result": None, "id": 1}
        answer = request(ws, "SUBSCRIBE", ["one-more@trade"], id=2)
        assert answer["id"] == 2 and answer["error"]["code"] == 2
        assert "1024" in answer["error"]["msg"]
        assert len(request(ws, "LIST_SUBSCRIPTIONS", id=3)["result"]) == 1024
    assert kinds(binance) == ["streams_per_connection"]


def test_too_many_streams_in_a_url_get_400() -> None:
    with FakeExchange(rules=ExchangeRules(max_streams_per_connection=2)) as exchange:
        status, _, body = handshake_refusal(exchange.combined_url("a@trade", "b@trade", "c@trade"))
        assert status == 400 and json.loads(body)["code"] == -1101
        with ws_client(exchange.combined_url("a@trade", "b@trade")):
            assert exchange.wait_for_open("b@trade", 1)
        assert kinds(exchange) == ["streams_per_connection"]


# -- connection attempts per IP ------------------------------------------------------------------


def test_300_attempts_per_5_minutes_then_429_then_418(binance: FakeExchange) -> None:
    started = time.monotonic()
    for _ in range(300):
        sock, head = raw_upgrade(binance.port, f"/ws/{TRADE}")
        sock.close()
        assert head.startswith(b"HTTP/1.1 101"), head[:60]
    status, headers, body = handshake_refusal(binance.stream_url(TRADE))
    assert status == 429 and json.loads(body)["code"] == -1003
    retry_after = int(headers["Retry-After"])
    assert 300 - (time.monotonic() - started) - 1 <= retry_after <= 300
    status, headers, _ = handshake_refusal(binance.stream_url(TRADE))  # told to wait: a ban
    assert status == 418 and headers["Retry-After"] == "120"
    status, headers, _ = handshake_refusal(binance.stream_url(TRADE))
    assert status == 418 and 119 <= int(headers["Retry-After"]) <= 120
    assert kinds(binance) == ["connection_attempts", "banned", "banned"]
    assert binance.total_attempts() == 303


def test_retry_after_is_honest() -> None:
    rules = ExchangeRules(connection_attempts=(2, 1.0 * SCALE), ban_seconds=30.0)
    with FakeExchange(rules=rules) as exchange:
        for _ in range(2):
            with ws_client(exchange.stream_url(TRADE)):
                pass
        status, headers, _ = handshake_refusal(exchange.stream_url(TRADE))
        assert status == 429
        retry_after = int(headers["Retry-After"])
        assert retry_after >= 1
        time.sleep(retry_after)  # the client waits as it was told (the test's subject)
        with ws_client(exchange.stream_url(TRADE)):
            assert exchange.wait_for_open(TRADE, 1)
        assert kinds(exchange) == ["connection_attempts"]


# -- connection age, pings ------------------------------------------------------------------------


def test_the_exchange_closes_a_connection_at_its_maximum_age() -> None:
    with FakeExchange(rules=ExchangeRules(max_connection_age=0.3 * SCALE)) as exchange:
        with ws_client(exchange.stream_url(TRADE)) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5 * SCALE)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert exchange.wait_until(lambda: exchange.open_connections() == 0)
        (info,) = exchange.connections(open_only=False)
        assert info.closed_at is not None
        assert 0.3 * SCALE <= info.closed_at - info.opened_at < 2 * SCALE
        assert exchange.violations() == []


def test_server_pings_answered_keep_the_connection() -> None:
    rules = ExchangeRules(server_ping_interval=0.05 * SCALE, pong_timeout=1.0 * SCALE)
    with FakeExchange(rules=rules) as exchange:
        with ws_client(exchange.stream_url(TRADE)):  # answers pings by itself
            assert exchange.wait_until(
                lambda: any(c.client_messages >= 8 for c in exchange.connections()),
                timeout=5 * SCALE,
            )
            assert exchange.open_connections() == 1
        assert exchange.violations() == []


def test_no_pong_within_the_timeout_disconnects() -> None:
    rules = ExchangeRules(server_ping_interval=0.05 * SCALE, pong_timeout=0.2 * SCALE)
    with FakeExchange(rules=rules) as exchange:
        sock, head = raw_upgrade(exchange.port, f"/ws/{TRADE}")
        try:
            assert head.startswith(b"HTTP/1.1 101")
            received = head.split(b"\r\n\r\n", 1)[1]
            deadline = time.monotonic() + 5 * SCALE
            while time.monotonic() < deadline and (chunk := sock.recv(4096)):
                received += chunk
        finally:
            sock.close()
        assert b"\x89\x011" in received  # the first ping, payload "1"
        assert b"\x88" in received and (1008).to_bytes(2, "big") in received
        assert kinds(exchange)[0] == "pong_timeout"


# -- request line ---------------------------------------------------------------------------------


def test_a_request_line_over_the_limit_gets_414(binance: FakeExchange) -> None:
    streams = [f"stream{i:04d}@trade" for i in range(600)]  # ~10 KB of URL
    sock, head = raw_upgrade(binance.port, "/stream?streams=" + "/".join(streams))
    sock.close()
    assert head.startswith(b"HTTP/1.1 414")
    assert kinds(binance) == ["request_line"]
    fits = streams[: (8192 - 30) // 18]
    with ws_client(binance.combined_url(*fits)):
        assert binance.wait_for_open(fits[-1], 1)
    assert kinds(binance) == ["request_line"]


def test_a_smaller_request_line_limit_is_enforced() -> None:
    with FakeExchange(rules=ExchangeRules(max_request_line=100)) as exchange:
        assert raw_upgrade(exchange.port, "/ws/" + "a" * 100)[1].startswith(b"HTTP/1.1 414")
        sock, head = raw_upgrade(exchange.port, "/ws/" + "a" * 70)
        sock.close()
        assert head.startswith(b"HTTP/1.1 101")


def test_without_rules_an_unparseable_request_line_gets_414_unrecorded(
    exchange_default: FakeExchange,
) -> None:
    sock, head = raw_upgrade(exchange_default.port, "/ws/" + "a" * 9000)
    sock.close()
    assert head.startswith(b"HTTP/1.1 414") and exchange_default.violations() == []


@pytest.fixture
def exchange_default() -> Iterator[FakeExchange]:
    with FakeExchange() as fake:
        yield fake


# -- enforce=False, and good behaviour ------------------------------------------------------------


def test_enforce_false_records_but_refuses_and_closes_nothing() -> None:
    rules = ExchangeRules.binance(
        enforce=False, connection_attempts=(1, 60.0), max_streams_per_connection=1
    )
    with (
        FakeExchange(rules=rules) as exchange,
        ws_client(exchange.combined_url(TRADE)) as first,
        ws_client(exchange.combined_url(TRADE, "b@trade")) as second,
    ):
        for i in range(7):
            first.ping(str(i).encode())
        assert request(second, "SUBSCRIBE", ["c@trade"]) == {"result": None, "id": 1}
        assert exchange.wait_until(lambda: "client_messages" in kinds(exchange))
        assert exchange.open_connections() == 2
        assert exchange.publish(TRADE) == 2
        assert recv_json(first)["data"]["t"] == 1
    assert set(kinds(exchange)) == {
        "connection_attempts",
        "streams_per_connection",
        "client_messages",
    }
    assert all(isinstance(v, Violation) and v.at > 0 for v in exchange.violations())


def test_a_well_behaved_client_breaks_no_rule(binance: FakeExchange) -> None:
    with ws_client(binance.combined_url(TRADE, "ethusdt@trade"), ping_interval=0.3) as ws:
        assert request(ws, "SUBSCRIBE", ["btcusdt@depth@100ms"]) == {"result": None, "id": 1}
        binance.set_rate(20)
        seen = {recv_json(ws)["stream"] for _ in range(30)}
        binance.set_rate(0)
        assert request(ws, "UNSUBSCRIBE", [TRADE], id=2) == {"result": None, "id": 2}
    assert seen == {TRADE, "ethusdt@trade", "btcusdt@depth@100ms"}
    assert binance.violations() == []


# -- the command line ------------------------------------------------------------------------------


def test_cli_fake_exchange_with_binance_rules() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "wsmanager", "fake-exchange", "--port", "0", "--rules", "binance"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "rules: binance" in line
        match = re.search(r"ws://127\.0\.0\.1:(\d+)/ws/", line)
        assert match, line
        with ws_client(f"ws://127.0.0.1:{match.group(1)}/stream") as ws:
            for i in range(6):
                ws.ping(str(i).encode())
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=3 * SCALE)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10 * SCALE)
    assert process.returncode == 0
    assert "violations recorded: 1" in output
