"""The fake exchange on its own, driven by plain clients (python-websockets' sync client, raw
sockets), never by wsmanager's manager: endpoints, control requests, sequences, stream faults
and introspection. The helpers here are shared by tests/test_fake_exchange_*.py."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import SCALE
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from wsmanager.testing import FakeExchange
from wsmanager.testing.connection import HookedConnection

TRADE = "btcusdt@trade"
AGG = "btcusdt@aggTrade"
DEPTH = "btcusdt@depth@100ms"


# -- plain clients (also used by the other test_fake_exchange_* files) ----------------------------


def ws_client(url: str, **options: Any) -> ClientConnection:
    """A client that sends nothing on its own (no pings), no proxy, no compression."""
    settings: dict[str, Any] = {
        "proxy": None,
        "ping_interval": None,
        "compression": None,
        "open_timeout": 5 * SCALE,
        "close_timeout": 2 * SCALE,
        **options,
    }
    return connect(url, **settings)


def recv_json(ws: ClientConnection, timeout: float = 2.0) -> Any:
    return json.loads(ws.recv(timeout=timeout * SCALE))


def nothing_arrives(ws: ClientConnection, within: float = 0.2) -> bool:
    try:
        ws.recv(timeout=within * SCALE)
    except TimeoutError:
        return True
    return False


def request(ws: ClientConnection, method: str, params: Any = None, id: Any = 1) -> Any:
    """Send a control request and return the next message (its answer when nothing flows)."""
    message: dict[str, Any] = {"method": method, "id": id}
    if params is not None:
        message["params"] = params
    ws.send(json.dumps(message))
    return recv_json(ws)


def handshake_refusal(url: str) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a refused handshake (fails if it is accepted)."""
    try:
        with ws_client(url):
            pass
    except InvalidStatus as exc:
        response = exc.response
        return response.status_code, dict(response.headers.raw_items()), response.body or b""
    raise AssertionError(f"the handshake to {url} was accepted")


def raw_upgrade(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A WebSocket handshake by hand; the socket then answers nothing (not even pings)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5 * SCALE)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(65536)
        if not chunk:
            break
        head += chunk
    return sock, head


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(seed=7) as fake:
        yield fake


# -- endpoints -----------------------------------------------------------------------------------


def test_raw_stream_sends_payloads_as_is_numbered_by_the_stream(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(TRADE)) as ws:
        assert exchange.wait_for_open(TRADE, 1)
        assert exchange.publish(TRADE) == 1
        exchange.publish(TRADE)
        first, second = recv_json(ws), recv_json(ws)
    assert first["e"] == "trade" and first["s"] == "BTCUSDT"
    assert (first["t"], second["t"]) == (1, 2)
    assert exchange.sequence(TRADE) == 2


def test_combined_stream_envelopes_each_payload(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE, AGG)) as ws:
        assert exchange.wait_for_open(TRADE, 1) and exchange.wait_for_open(AGG, 1)
        exchange.publish(AGG)
        exchange.publish(TRADE)
        agg, trade = recv_json(ws), recv_json(ws)
        assert request(ws, "LIST_SUBSCRIPTIONS", id=3) == {"result": [TRADE, AGG], "id": 3}
    assert set(agg) == {"stream", "data"} and agg["stream"] == AGG
    assert agg["data"]["e"] == "aggTrade" and agg["data"]["a"] == 1
    assert trade["stream"] == TRADE and trade["data"]["t"] == 1


@pytest.mark.parametrize("path", ["/ws", "/ws/"])
def test_ws_without_a_stream_carries_what_is_subscribed_raw(
    exchange: FakeExchange, path: str
) -> None:
    with ws_client(f"ws://127.0.0.1:{exchange.port}{path}") as ws:
        assert exchange.wait_until(lambda: exchange.open_connections() == 1)
        assert request(ws, "LIST_SUBSCRIPTIONS") == {"result": [], "id": 1}
        assert request(ws, "SUBSCRIBE", [TRADE, AGG], id=7) == {"result": None, "id": 7}
        assert exchange.stats(TRADE).open == 1 and exchange.stats(TRADE).accepted == 1
        exchange.publish(TRADE)
        assert recv_json(ws)["t"] == 1  # raw, no envelope
        assert request(ws, "UNSUBSCRIBE", [TRADE], id=8) == {"result": None, "id": 8}
        assert request(ws, "LIST_SUBSCRIPTIONS", id=9) == {"result": [AGG], "id": 9}
        assert exchange.publish(TRADE) == 0
        assert exchange.stats(TRADE).open == 0


@pytest.mark.parametrize("url_tail", ["/stream", "/stream?streams=", "/stream/"])
def test_stream_without_streams_opens_empty_and_envelopes(
    exchange: FakeExchange, url_tail: str
) -> None:
    with ws_client(f"ws://127.0.0.1:{exchange.port}{url_tail}") as ws:
        assert request(ws, "SUBSCRIBE", [TRADE]) == {"result": None, "id": 1}
        exchange.publish(TRADE)
        message = recv_json(ws)
    assert set(message) == {"stream", "data"}
    assert message["stream"] == TRADE and message["data"]["t"] == 1


def test_set_property_combined_envelopes_a_raw_connection(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(TRADE)) as ws:
        assert request(ws, "GET_PROPERTY", ["combined"], id=2) == {"result": False, "id": 2}
        assert request(ws, "SET_PROPERTY", ["combined", True], id=3) == {"result": None, "id": 3}
        assert request(ws, "GET_PROPERTY", ["combined"], id=4) == {"result": True, "id": 4}
        exchange.publish(TRADE)
        assert recv_json(ws)["stream"] == TRADE


def test_refused_or_invalid_streams_in_a_url_get_400_with_binance_json(
    exchange: FakeExchange,
) -> None:
    exchange.refuse_stream("ethusdt@trade")
    for url in (
        exchange.combined_url(TRADE, "ethusdt@trade"),
        exchange.stream_url("ethusdt@trade"),
        exchange.combined_url(TRADE, "bad%20name"),
    ):
        status, headers, body = handshake_refusal(url)
        assert status == 400, url
        assert headers["Content-Type"] == "application/json"
        document = json.loads(body)
        assert document["code"] == -1100 and document["msg"]
    assert exchange.stats(TRADE).attempts == 2 and exchange.stats(TRADE).accepted == 0
    exchange.accept_stream("ethusdt@trade")
    with ws_client(exchange.combined_url(TRADE, "ethusdt@trade")):
        assert exchange.wait_for_open("ethusdt@trade", 1)


def test_unknown_paths_get_404(exchange: FakeExchange) -> None:
    assert handshake_refusal(f"ws://127.0.0.1:{exchange.port}/nope")[0] == 404
    assert handshake_refusal(f"ws://127.0.0.1:{exchange.port}/streams?streams=a@trade")[0] == 404


# -- control requests ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "code", "answer_id"),
    [
        ("{not json", 3, None),
        ('["SUBSCRIBE"]', 2, None),
        ('{"params": [], "id": 5}', 2, 5),
        ('{"method": "SUBSCRIBED", "params": [], "id": 5}', 2, 5),
        ('{"method": "SUBSCRIBE", "params": "btcusdt@trade", "id": 5}', 2, 5),
        ('{"method": "SUBSCRIBE", "params": [1], "id": 5}', 1, 5),
        ('{"method": "SUBSCRIBE", "params": ["a b"], "id": 5}', 2, 5),
        ('{"method": "SUBSCRIBE", "params": [], "id": 1.5}', 2, None),
        ('{"method": "SUBSCRIBE", "params": [], "id": "x y"}', 2, None),
        ('{"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 5}', 2, 5),
        ('{"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 5}', 1, 5),
        ('{"method": "SET_PROPERTY", "params": ["colour", true], "id": 5}', 0, 5),
        ('{"method": "GET_PROPERTY", "params": [7], "id": 5}', 2, 5),
        ('{"method": "GET_PROPERTY", "params": ["colour"], "id": 5}', 0, 5),
    ],
)
def test_control_errors_as_binance(
    exchange: FakeExchange, message: str, code: int, answer_id: Any
) -> None:
    with ws_client(exchange.combined_url()) as ws:
        ws.send(message)
        answer = recv_json(ws)
    assert set(answer) == {"error", "id"}
    assert answer["id"] == answer_id
    assert answer["error"]["code"] == code and answer["error"]["msg"]
    (entry,) = exchange.control_log()
    assert entry.answer == answer


def test_subscribing_a_carried_stream_again_changes_nothing(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE)) as ws:
        assert request(ws, "SUBSCRIBE", [TRADE, TRADE]) == {"result": None, "id": 1}
        assert request(ws, "LIST_SUBSCRIPTIONS", id=2) == {"result": [TRADE], "id": 2}
        stats = exchange.stats(TRADE)
        assert (stats.accepted, stats.open) == (1, 1)
        assert exchange.publish(TRADE) == 1


def test_ids_may_be_strings_or_null(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url()) as ws:
        assert request(ws, "SUBSCRIBE", [TRADE], id="req-1") == {"result": None, "id": "req-1"}
        assert request(ws, "LIST_SUBSCRIPTIONS", id=None) == {"result": [TRADE], "id": None}


def test_a_refused_stream_refuses_the_whole_request(exchange: FakeExchange) -> None:
    exchange.refuse_stream("ethusdt@trade", code=2, msg="Invalid request: no such symbol")
    with ws_client(exchange.combined_url()) as ws:
        answer = request(ws, "SUBSCRIBE", [TRADE, "ethusdt@trade"], id=4)
        assert answer == {"error": {"code": 2, "msg": "Invalid request: no such symbol"}, "id": 4}
        assert request(ws, "LIST_SUBSCRIPTIONS", id=5) == {"result": [], "id": 5}
        assert request(ws, "SUBSCRIBE", [TRADE], id=6) == {"result": None, "id": 6}
    assert exchange.stats("ethusdt@trade").accepted == 0


def test_control_delay_answers_late_but_takes_effect_at_once(exchange: FakeExchange) -> None:
    exchange.control_delay(0.4 * SCALE)
    with ws_client(exchange.combined_url()) as ws:
        started = time.monotonic()
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [TRADE], "id": 1}))
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        first, second = recv_json(ws), recv_json(ws)
        assert first["stream"] == TRADE  # the data came before the late answer
        assert second == {"result": None, "id": 1}
        assert time.monotonic() - started >= 0.4 * SCALE


def test_unanswered_control_requests_still_take_effect(exchange: FakeExchange) -> None:
    exchange.answer_control(False)
    with ws_client(exchange.combined_url()) as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [TRADE], "id": 1}))
        assert exchange.wait_for_open(TRADE, 1)
        exchange.publish(TRADE)
        assert recv_json(ws)["stream"] == TRADE
        assert nothing_arrives(ws)
    (entry,) = exchange.control_log()
    assert entry.request == {"method": "SUBSCRIBE", "params": [TRADE], "id": 1}
    assert entry.answer is None


# -- sequences -----------------------------------------------------------------------------------


def test_one_sequence_per_stream_the_same_message_on_every_connection(
    exchange: FakeExchange,
) -> None:
    with (
        ws_client(exchange.stream_url(TRADE)) as raw,
        ws_client(exchange.combined_url(TRADE)) as combined,
        ws_client(exchange.combined_url()) as late,
    ):
        assert request(late, "SUBSCRIBE", [TRADE]) == {"result": None, "id": 1}
        assert exchange.wait_for_open(TRADE, 3)
        for _ in range(5):
            assert exchange.publish(TRADE) == 3
        raws = [recv_json(raw) for _ in range(5)]
        assert [recv_json(combined)["data"] for _ in range(5)] == raws
        assert [recv_json(late)["data"] for _ in range(5)] == raws
    assert [m["t"] for m in raws] == [1, 2, 3, 4, 5]
    assert exchange.stats(TRADE).sent == 15


def test_sequences_by_kind(exchange: FakeExchange) -> None:
    streams = [AGG, DEPTH, "btcusdt@bookTicker"]
    with ws_client(exchange.combined_url(*streams)) as ws:
        for _ in range(30):
            for stream in streams:
                exchange.publish(stream)
        got: dict[str, list[Any]] = {s: [] for s in streams}
        for _ in range(90):
            message = recv_json(ws)
            got[message["stream"]].append(message["data"])
    aggs = got[AGG]
    assert [m["a"] for m in aggs] == list(range(1, 31))
    for previous, current in itertools.pairwise(aggs):
        assert current["f"] == previous["l"] + 1 and current["l"] >= current["f"]
    depth = got[DEPTH]
    for previous, current in itertools.pairwise(depth):
        assert current["U"] == previous["u"] + 1
    assert all(0 <= m["u"] - m["U"] <= 3 for m in depth)
    tickers = [m["u"] for m in got["btcusdt@bookTicker"]]
    assert all(1 <= b - a <= 5 for a, b in itertools.pairwise(tickers))
    assert exchange.sequence(DEPTH) == depth[-1]["u"]


def test_an_explicit_payload_is_sent_as_given_without_a_number(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(TRADE)) as ws:
        exchange.publish(TRADE, {"e": "trade", "p": "1.0"})
        assert recv_json(ws) == {"e": "trade", "p": "1.0"}
    assert exchange.sequence(TRADE) == 0


def test_set_rate_publishes_every_carried_stream(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE)) as ws:
        assert request(ws, "SUBSCRIBE", [AGG]) == {"result": None, "id": 1}
        exchange.set_rate(50)
        seen: set[str] = set()
        while len(seen) < 2:
            seen.add(recv_json(ws)["stream"])
        exchange.set_rate(0)
    assert exchange.sequence(TRADE) >= 1 and exchange.sequence(AGG) >= 1


# -- stream faults -------------------------------------------------------------------------------


@pytest.mark.parametrize(("stream", "field"), [(TRADE, "t"), (AGG, "a")])
def test_skip_makes_a_gap_of_exactly_count(exchange: FakeExchange, stream: str, field: str) -> None:
    with ws_client(exchange.stream_url(stream)) as ws:
        exchange.publish(stream)
        exchange.skip(stream, 4)
        exchange.publish(stream)
        before, after = recv_json(ws), recv_json(ws)
    assert after[field] - before[field] == 5
    if stream == AGG:  # the skipped aggregates hold trades too: the trade ids jump as well
        assert after["f"] > before["l"] + 4


def test_skip_on_depth_skips_exactly_count_update_ids(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(DEPTH)) as ws:
        exchange.publish(DEPTH)
        exchange.skip(DEPTH, 6)
        exchange.publish(DEPTH)
        before, after = recv_json(ws), recv_json(ws)
    assert after["U"] == before["u"] + 1 + 6


def test_repeat_sends_the_last_message_again(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE)) as ws:
        exchange.publish(TRADE)
        assert exchange.repeat(TRADE, times=2) == 1
        messages = [recv_json(ws) for _ in range(3)]
    assert messages[0] == messages[1] == messages[2]
    with pytest.raises(ValueError, match="nothing was published"):
        exchange.repeat(AGG)


def test_silence_stops_a_stream_until_it_is_subscribed_again(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE, AGG)) as ws:
        assert exchange.silence(TRADE) == 1
        exchange.publish(TRADE)
        exchange.publish(AGG)
        assert recv_json(ws)["stream"] == AGG  # the neighbour still flows
        assert nothing_arrives(ws)
        with ws_client(exchange.combined_url()) as later:
            assert request(later, "SUBSCRIBE", [TRADE]) == {"result": None, "id": 1}
            exchange.publish(TRADE)
            assert recv_json(later)["data"]["t"] == 2  # the sequence went on
        assert nothing_arrives(ws)
        assert request(ws, "UNSUBSCRIBE", [TRADE], id=2) == {"result": None, "id": 2}
        assert request(ws, "SUBSCRIBE", [TRADE], id=3) == {"result": None, "id": 3}
        exchange.publish(TRADE)
        assert recv_json(ws)["data"]["t"] == 3


def test_unsilence(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(TRADE)) as ws:
        exchange.silence(TRADE)
        exchange.publish(TRADE)
        assert exchange.unsilence(TRADE) == 1
        exchange.publish(TRADE)
        assert recv_json(ws)["t"] == 2


@pytest.mark.parametrize("enveloped", [False, True])
def test_server_shutdown_event_then_close_1001(exchange: FakeExchange, enveloped: bool) -> None:
    with (
        ws_client(exchange.combined_url(TRADE)) as combined,
        ws_client(f"ws://127.0.0.1:{exchange.port}/ws") as bare,
    ):
        assert exchange.wait_until(lambda: exchange.open_connections() == 2)
        assert exchange.server_shutdown(enveloped=enveloped, close_after=0.2 * SCALE) == 2
        event = recv_json(combined)
        if enveloped:
            assert event["stream"] == TRADE
            event = event["data"]
        assert event["e"] == "serverShutdown" and isinstance(event["E"], int)
        assert recv_json(bare)["e"] == "serverShutdown"  # no streams: bare
        for ws in (combined, bare):
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=3 * SCALE)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001


def test_drop_and_stall_reach_connections_that_subscribed(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url()) as ws, ws_client(exchange.stream_url(AGG)) as other:
        assert request(ws, "SUBSCRIBE", [TRADE]) == {"result": None, "id": 1}
        assert exchange.stall(TRADE) == 1
        assert exchange.publish(TRADE) == 0
        assert exchange.drop(TRADE, code=1001) == 1
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=3 * SCALE)
        exchange.publish(AGG)
        assert recv_json(other)["a"] == 1  # the other connection is untouched


def test_handshake_faults_apply_to_combined_urls(exchange: FakeExchange) -> None:
    exchange.reject(503, {"Retry-After": "2"}, stream=AGG)
    status, headers, _ = handshake_refusal(exchange.combined_url(TRADE, AGG))
    assert status == 503 and headers["Retry-After"] == "2"
    with ws_client(exchange.combined_url(TRADE)):
        assert exchange.wait_for_open(TRADE, 1)
    exchange.accept_normally(stream=AGG)
    exchange.accept_then_close(1001)
    with ws_client(exchange.combined_url()) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=3 * SCALE)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert exchange.stats(AGG).attempts == 1


def test_send_raw_is_never_enveloped(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE)) as ws:
        assert exchange.send_raw(TRADE, "not json") == 1
        assert exchange.send_raw(TRADE, ["{", "}"]) == 1
        assert ws.recv(timeout=2 * SCALE) == "not json"
        assert ws.recv(timeout=2 * SCALE) == "{}"


# -- introspection -------------------------------------------------------------------------------


def test_connection_info_counts_text_ping_and_pong_frames(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url(TRADE)) as ws:
        assert request(ws, "LIST_SUBSCRIPTIONS") == {"result": [TRADE], "id": 1}
        ws.ping(b"p").wait(2 * SCALE)
        ws.pong(b"unsolicited")
        assert exchange.wait_until(lambda: exchange.connections()[0].client_messages == 3)
        (info,) = exchange.connections()
        assert info.path == f"/stream?streams={TRADE}"
        assert info.streams == frozenset({TRADE}) and info.closed_at is None
        times = exchange.client_message_times(info.id)
        assert len(times) == 3 and times == sorted(times) and times[0] >= info.opened_at
    assert exchange.wait_until(lambda: not exchange.connections())
    (closed,) = exchange.connections(open_only=False)
    assert closed.close_code == 1000 and closed.closed_at is not None
    assert exchange.close_codes(TRADE) == [1000]


def test_counters_for_every_kind_of_connection(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url(TRADE)), ws_client(exchange.combined_url(TRADE, AGG)):
        with ws_client(exchange.combined_url()) as ws:
            request(ws, "SUBSCRIBE", [TRADE])
            assert exchange.wait_for_open(TRADE, 3)
            exchange.publish(TRADE)
            stats = exchange.stats(TRADE)
            assert (stats.attempts, stats.accepted, stats.open, stats.sent) == (2, 3, 3, 3)
        assert exchange.wait_for_open(TRADE, 2)
    assert exchange.total_attempts() == 3
    assert len(exchange.attempt_times()) == 3 and len(exchange.attempt_times(AGG)) == 1
    assert exchange.wait_until(lambda: exchange.open_connections() == 0)


def test_wait_until_wakes_on_subscribe(exchange: FakeExchange) -> None:
    woke = threading.Event()

    def waiter() -> None:
        if exchange.wait_until(lambda: exchange.stats(AGG).open == 1, timeout=5 * SCALE):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    with ws_client(exchange.combined_url()) as ws:
        ws.send(json.dumps({"method": "SUBSCRIBE", "params": [AGG], "id": 1}))
        assert woke.wait(3 * SCALE)
    thread.join()


def test_control_log_in_order(exchange: FakeExchange) -> None:
    with ws_client(exchange.combined_url()) as ws:
        request(ws, "SUBSCRIBE", [TRADE], id=1)
        request(ws, "LIST_SUBSCRIPTIONS", id=2)
        ws.send("oops")
        recv_json(ws)
    log = exchange.control_log()
    assert [entry.request for entry in log[:2]] == [
        {"method": "SUBSCRIBE", "id": 1, "params": [TRADE]},
        {"method": "LIST_SUBSCRIPTIONS", "id": 2},
    ]
    assert log[2].request == "oops" and log[2].answer is not None
    assert log[2].answer["error"]["code"] == 3
    assert {entry.connection_id for entry in log} == {1}


def test_the_frame_hook_checks_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HookedConnection, "process_event", ServerConnection.process_event)
    exchange = FakeExchange().start()
    try:
        with ws_client(exchange.combined_url()) as ws:
            request(ws, "LIST_SUBSCRIPTIONS")
    finally:
        with pytest.raises(RuntimeError, match="frame hook"):
            exchange.close()


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="book_levels"):
        FakeExchange(book_levels=0)
    with pytest.raises(ValueError, match="rate"):
        FakeExchange(rate=-1)
    with pytest.raises(TypeError, match="rules"):
        FakeExchange(rules={"max_streams_per_connection": 1})  # type: ignore[arg-type]
    with FakeExchange() as exchange:
        with pytest.raises(ValueError, match="count"):
            exchange.skip(TRADE, 0)
        with pytest.raises(ValueError, match="times"):
            exchange.repeat(TRADE, times=0)
