"""Hostile numbers and REST bounds (issue 17, findings 6, 10, 11 and 13): through the public API
against real servers on loopback (the fake exchange, raw scripted servers from ``hostile.py``)."""

from __future__ import annotations

import gzip
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for
from hostile import Peer, ScriptedServer, frame

from wsmanager import WSManager
from wsmanager.backoff import MAX_RETRY_AFTER, BackoffPolicy, parse_retry_after
from wsmanager.book import RestClient, RestError, weight_budget
from wsmanager.net.limits import HOST_BUDGETS
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
DEPTH = "btcusdt@depth@100ms"

# -- #6 Retry-After: one strict parser, capped, anything else ignored -----------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("99999999999", MAX_RETRY_AFTER),
        ("9" * 5000, MAX_RETRY_AFTER),  # int() of it would raise (the 4300-digit limit)
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # in the past: now
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("\u00b2", None),  # superscript two: str.isdigit() says yes, float() raises
        ("\uff13", None),  # a full-width digit: float() would take it
        ("inf", None),
        ("nan", None),
        ("1e20", None),
        ("-5", None),
        ("+5", None),
        ("2.5", None),
        ("0x10", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Wed, 21 Oct 2015 07:28:00 -0000", 10.0),  # email.utils.formatdate's: GMT
        ("Wed, 21 Oct 2015 09:28:00 +0200", 10.0),
        ("Wed, 21 Oct 99999 07:28:00 GMT", None),  # year out of range
        ("Wed, 99 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_6_retry_after_is_ascii_digits_or_an_http_date_capped(
    value: str | None, expected: float | None
) -> None:
    assert parse_retry_after(value, now=1445412470.0) == expected


def test_6_a_unicode_digit_in_retry_after_does_not_end_the_connections_streams() -> None:
    """``Retry-After: ²`` on a handshake: before, ``float()`` raised in the reader thread and the
    stream was removed with an internal error; now the header is ignored and the stream retried."""

    def script(peer: Peer) -> None:
        peer.read_request()
        if server.accepted == 1:
            peer.send(  # the head is read as ISO-8859-1: byte 0xB2 is "²"
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: \xb2\r\nContent-Length: 0\r\n\r\n"
            )
            return
        peer.sock.sendall(peer.upgrade_response())
        peer.send(frame(json.dumps({"e": "trade", "s": "BTCUSDT", "t": 1}).encode()))
        peer.wait_closed(10 * SCALE)

    with ScriptedServer(script) as server:
        recorder = Recorder()
        manager = WSManager(url=server.url("/ws"), **FAST)
        try:
            manager.subscribe(TRADE, recorder, recorder.on_error)
            assert recorder.wait(lambda r: bool(r.messages or r.errors), 5)
            assert not recorder.errors, recorder.errors
            assert recorder.messages[0]["t"] == 1
            assert server.accepted == 2
        finally:
            manager.destroy()


@pytest.mark.parametrize("value", ["inf", "1e20", "-1", "nan"])
def test_6_a_hostile_rest_retry_after_never_pauses_the_host_for_good(value: str) -> None:
    """Before: ``inf`` or ``1e20`` killed the book's snapshot worker (``OverflowError``) and
    paused the REST host for the whole process: a second book sent 0 requests, forever."""
    with FakeExchange(seed=7, book_levels=20) as exchange:
        exchange.rest_throttle(429, retry_after=value, count=1)
        manager = WSManager(url=exchange.url, rest_url=exchange.rest_url, **FAST)
        try:
            options: dict[str, Any] = {
                "min_snapshot_interval": 0.05,
                "retry": BackoffPolicy(0.01, 0.1),
                "limit": 100,
            }
            first = manager.order_book("BTCUSDT", **options)
            assert exchange.wait_for_open(DEPTH)
            published = _publish_until(exchange, DEPTH, first.wait_synced)
            assert published, "the book never synced after a hostile Retry-After"
            second = manager.order_book("ETHUSDT", **options)
            assert _publish_until(exchange, "ethusdt@depth@100ms", second.wait_synced)
            depth = [r for r in exchange.rest_requests() if r[1] == "/api/v3/depth"]
            assert [r[3] for r in depth][:1] == [429]
        finally:
            manager.destroy()


def _publish_until(
    exchange: FakeExchange, stream: str, done: Callable[[float], bool], timeout: float = 10.0
) -> bool:
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        exchange.publish(stream)
        if done(0.05):
            return True
    return False


def test_6_a_rest_retry_after_in_the_year_9999_is_capped_to_three_days() -> None:
    """Before: ``OverflowError`` in the snapshot worker; the book failed for good."""
    with FakeExchange(seed=7, book_levels=20) as exchange:
        exchange.rest_throttle(429, retry_after="Fri, 31 Dec 9999 23:59:59 GMT", count=1)
        manager = WSManager(url=exchange.url, rest_url=exchange.rest_url, **FAST)
        try:
            book = manager.order_book("BTCUSDT", limit=100)
            assert exchange.wait_for_open(DEPTH)
            budget = weight_budget(exchange.rest_url)
            exchange.publish(DEPTH)  # one buffered event: a snapshot is asked for
            assert wait_for(lambda: budget.paused_for() > 0)
            assert MAX_RETRY_AFTER - 60 < budget.paused_for() <= MAX_RETRY_AFTER
            exchange.publish(DEPTH)
            assert not wait_for(lambda: book.error is not None, 0.3)  # waiting, not dead
            assert not book.closed
            started = time.monotonic()
            book.close()
            assert time.monotonic() - started < 1.0 * SCALE
        finally:
            manager.destroy()


# -- #13 the connection budget per client IP; the message rate under the exchange's limit ---------


def test_13_every_port_of_a_host_shares_one_connection_budget() -> None:
    """Before: keyed by ``host:port``, two exchanges on one host had two budgets (Binance counts
    per IP): 2 attempts with a budget of 1."""
    with FakeExchange() as first, FakeExchange() as second:
        options = {**FAST, "connection_budget": (1, 60.0)}
        one = WSManager(url=first.url, **options)
        two = WSManager(url=second.url, **options)
        try:
            one.subscribe(TRADE, lambda message: None)
            assert first.wait_for_open(TRADE)
            two.subscribe(TRADE, lambda message: None)
            assert not second.wait_for_attempts(TRADE, 1, timeout=0.5)
            assert HOST_BUDGETS.attempts_in("127.0.0.1", 60.0) == 1
        finally:
            one.destroy()
            two.destroy()


def test_13_through_a_proxy_attempts_count_against_the_proxy() -> None:
    from wsmanager.net.limits import host_key

    url = "wss://Stream.Binance.com:9443/ws"
    assert host_key(url) == host_key("wss://stream.binance.com:443/ws") == "stream.binance.com"
    assert host_key(url, "http://user:pw@proxy.example:3128") == (
        "stream.binance.com via proxy.example:3128"
    )
    assert host_key(url, "socks5://proxy.example") == "stream.binance.com via proxy.example:1080"


@pytest.mark.parametrize(
    ("options", "limit"),
    [
        ({"endpoint": "spot", "max_client_messages_per_second": 5}, 5),
        ({"endpoint": "spot", "max_client_messages_per_second": 50.0}, 5),
        ({"endpoint": "usdm-market", "max_client_messages_per_second": 10}, 10),
        ({"url": "wss://stream.binance.com:9443/ws", "max_client_messages_per_second": 6}, 5),
        ({"url": "wss://fstream.binance.com/ws", "max_client_messages_per_second": 12}, 10),
    ],
)
def test_13_a_message_rate_at_or_above_the_exchanges_limit_is_refused(
    options: dict[str, Any], limit: int
) -> None:
    with pytest.raises(ValueError, match=f"under the exchange's limit of {limit} "):
        WSManager(**options)


def test_13_a_message_rate_under_the_limit_or_for_another_host_is_kept() -> None:
    for options in (
        {"endpoint": "spot", "max_client_messages_per_second": 4.9},
        {"endpoint": "usdm-market", "max_client_messages_per_second": 9},
        {"url": "ws://127.0.0.1:9/ws", "max_client_messages_per_second": 50},
    ):
        manager = WSManager(**options)  # type: ignore[arg-type]
        assert (
            manager.config.max_client_messages_per_second
            == options["max_client_messages_per_second"]
        )
        manager.destroy()


# -- #11 a snapshot from the future is retaken -----------------------------------------------------


def test_11_a_snapshot_the_stream_never_reaches_is_retaken_not_frozen() -> None:
    """Before: a snapshot ``lastUpdateId`` far ahead of the stream was taken as the book's id;
    every later event was "old": the book stayed "synced" and frozen, with 1 snapshot request."""
    with FakeExchange(seed=7, book_levels=20) as exchange:
        manager = WSManager(url=exchange.url, rest_url=exchange.rest_url, **FAST)
        try:
            exchange.snapshot_ahead(10**9)
            book = manager.order_book(
                "BTCUSDT",  # limit 1000: the whole book of 20 levels a side
                min_snapshot_interval=0.05,
                retry=BackoffPolicy(0.01, 0.1),
                snapshot_reach_events=5,
                snapshot_reach_seconds=0.3 * SCALE,
            )
            assert exchange.wait_for_open(DEPTH)
            assert _publish_until(exchange, DEPTH, book.wait_synced)
            frozen_at = book.last_update_id
            assert frozen_at is not None and frozen_at > 10**9  # what the hostile server said
            started = time.monotonic()
            assert _publish_until(exchange, DEPTH, lambda t: book.unreached_snapshots >= 1 or
                                  bool(time.sleep(t)))  # fmt: skip
            assert time.monotonic() - started >= 0.3 * SCALE  # not before max(5 events, 0.3 s)
            exchange.snapshot_ahead(0)  # an honest snapshot: the book follows the stream again
            truth = exchange.sequence(DEPTH)
            assert _publish_until(
                exchange,
                DEPTH,
                lambda t: (
                    book.wait_synced(t)
                    and truth < (book.last_update_id or 0) <= exchange.sequence(DEPTH)
                ),
            )
            view = book.view()
            expected = exchange.book("BTCUSDT", view.last_update_id)
            assert (view.bids, view.asks) == (expected.bids(), expected.asks())
            depth = [r for r in exchange.rest_requests() if r[1] == "/api/v3/depth"]
            assert len(depth) >= 2 and book.resyncs >= 1
        finally:
            manager.destroy()


def test_11_a_snapshot_the_stream_reaches_stays_synced() -> None:
    """The check does not fire on an honest book, however slow the stream."""
    with FakeExchange(seed=7, book_levels=20) as exchange:
        manager = WSManager(url=exchange.url, rest_url=exchange.rest_url, **FAST)
        try:
            book = manager.order_book(
                "BTCUSDT", limit=100, snapshot_reach_events=1, snapshot_reach_seconds=0.01
            )
            assert exchange.wait_for_open(DEPTH)
            assert _publish_until(exchange, DEPTH, book.wait_synced)
            for _ in range(20):
                exchange.publish(DEPTH)
                time.sleep(0.02)
            assert wait_for(lambda: book.last_update_id == exchange.sequence(DEPTH))
            assert book.unreached_snapshots == 0 and book.resyncs == 0
        finally:
            manager.destroy()


# -- #10 REST answers under one deadline and a size cap; recording lines bounded -------------------


def _http_server(answer: Callable[[Peer, bytes], object]) -> ScriptedServer:
    """An HTTP/1.1 server: ``answer(peer, request_head)`` for each request of a connection."""

    def script(peer: Peer) -> None:
        while not peer.stop.is_set():
            head = peer.read_request()
            if b"\r\n\r\n" not in head:
                return
            answer(peer, head)

    return ScriptedServer(script)


def _json_answer(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _trickle_body(peer: Peer, head: bytes) -> None:
    body = b'{"lastUpdateId": 1, "bids": [], "asks": []}' + b" " * 100_000
    peer.send(_json_answer(body)[: -len(body)])  # the head at once,
    peer.trickle(body, 0.05)  # then a byte every 50 ms: each read is quick, the whole is not


def _trickle_head(peer: Peer, head: bytes) -> None:
    peer.trickle(b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 60_000 + b"\r\n\r\n", 0.05)


@pytest.mark.parametrize("answer", [_trickle_body, _trickle_head], ids=["body", "headers"])
def test_10_a_trickled_answer_is_cut_at_one_deadline_for_the_whole_answer(
    answer: Callable[[Peer, bytes], object],
) -> None:
    """Before: ``request_timeout`` bounded each read, and a byte every 50 ms never tripped it
    (the 100 kB body would have taken 83 minutes, the 60 kB header 50)."""
    with _http_server(answer) as server:
        client = RestClient(f"http://127.0.0.1:{server.port}", timeout=0.5 * SCALE)
        try:
            started = time.monotonic()
            with pytest.raises(RestError, match="no complete answer within"):
                client.get_json("/api/v3/depth", {"symbol": "BTCUSDT"}, weight=1)
            took = time.monotonic() - started
            assert 0.5 * SCALE <= took < 0.5 * SCALE + 0.5
        finally:
            client.close()


def test_10_close_and_destroy_cut_a_snapshot_request_in_flight() -> None:
    """Before: ``close()`` (and ``destroy()``) waited for the trickled snapshot to finish."""
    with FakeExchange(seed=7, book_levels=20) as exchange, _http_server(_trickle_body) as server:
        manager = WSManager(url=exchange.url, **FAST)
        closer: threading.Thread | None = None
        try:
            book = manager.order_book(
                "BTCUSDT", f"http://127.0.0.1:{server.port}", request_timeout=60.0
            )
            assert exchange.wait_for_open(DEPTH)
            exchange.publish(DEPTH)  # a buffered event: the snapshot is asked for
            assert wait_for(lambda: book.stats().snapshot_requests == 1)
            assert wait_for(lambda: server.accepted == 1)
            time.sleep(0.2)  # the body is trickling now
            started = time.monotonic()
            closer = threading.Thread(target=manager.destroy)
            closer.start()
            closer.join(5 * SCALE)
            took = time.monotonic() - started
            assert not closer.is_alive(), "destroy() blocked by a snapshot in flight"
            assert took < 0.5 * SCALE, took
            assert book.closed and book.error is None
        finally:
            server.close()  # ends the trickle (and a blocked destroy() on the old code)
            if closer is not None:
                closer.join()
            manager.destroy()


def _levels(count: int) -> list[list[str]]:
    return [[f"{30000 + i}.00", "1.00"] for i in range(count)]


@pytest.mark.parametrize(
    ("levels", "error"),
    [
        (300, "depth snapshot: 300 bids, over the 120 a snapshot of limit=100 may hold"),
        (20_000, "an answer over 96256 bytes"),
    ],
)
def test_10_a_snapshot_far_over_its_limit_is_refused_with_a_clear_error(
    levels: int, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: any snapshot up to 32 MiB was loaded (10^6 levels: 531 MiB of RSS) and the book
    synced from it, 20,000 levels for a limit of 100."""
    snapshot = {"lastUpdateId": 10**12, "bids": _levels(levels), "asks": _levels(10)}
    body = json.dumps(snapshot).encode()

    def answer(peer: Peer, head: bytes) -> None:
        peer.send(_json_answer(body))

    caplog.set_level(logging.WARNING, logger="wsmanager.book")
    with FakeExchange(seed=7, book_levels=20) as exchange, _http_server(answer) as server:
        manager = WSManager(url=exchange.url, **FAST)
        try:
            book = manager.order_book(
                "BTCUSDT",
                f"http://127.0.0.1:{server.port}",
                limit=100,
                min_snapshot_interval=0.05,
                retry=BackoffPolicy(0.01, 0.05),
            )
            assert exchange.wait_for_open(DEPTH)
            exchange.publish(DEPTH)
            assert wait_for(lambda: book.stats().snapshot_requests >= 2)
            assert not book.synced
            assert error in caplog.text
        finally:
            manager.destroy()


def _recording_with_a_long_line(path: Any, size: int) -> None:
    with gzip.open(path, "wt", compresslevel=1) as out:
        out.write(json.dumps({"t": 1.0, "recording": {"part": 0, "streams": [TRADE]}}) + "\n")
        out.write(json.dumps({"t": 1.5, "stream": TRADE, "data": {"e": "trade", "t": 1}}) + "\n")
        out.write('{"t": 2.0, "stream": "' + TRADE + '", "data": "' + "x" * size + '"}\n')


def test_10_a_recording_line_over_the_bound_is_a_clear_error_naming_file_and_line(
    tmp_path: Any,
) -> None:
    """Before: a line was read whole, however long (a 1 GiB line took 2 GiB)."""
    from wsmanager.recording import MAX_LINE_BYTES, RecordingError, read

    path = tmp_path / "huge.jsonl.gz"
    _recording_with_a_long_line(path, MAX_LINE_BYTES)
    entries = []
    with pytest.raises(RecordingError, match=rf"{path}:3: a line over {MAX_LINE_BYTES} bytes"):
        entries.extend(read(path))
    assert len(entries) == 2  # what came before it was read


def test_10_replaying_a_recording_with_a_line_over_the_bound_stops_with_that_error(
    tmp_path: Any,
) -> None:
    from wsmanager.recording import RecordingError

    path = tmp_path / "huge.jsonl.gz"
    _recording_with_a_long_line(path, 2000)
    with FakeExchange() as exchange:
        replay = exchange.replay(path, speed=math.inf, max_line_bytes=1000)
        with pytest.raises(RecordingError, match=rf"{path}:3: a line over 1000 bytes"):
            replay.wait(5 * SCALE)
        assert replay.progress().messages == 1  # what came before it went out


def test_11_the_check_waits_for_both_the_events_and_the_seconds() -> None:
    from wsmanager.book.reach import SnapshotReach

    reach = SnapshotReach(events=3, seconds=10.0)
    reach.synced(snapshot_id=1000, book_id=1000, now=0.0)
    assert [reach.overdue(5, now) for now in (1.0, 2.0, 3.0, 9.9)] == [False] * 4  # 4 events
    assert reach.overdue(6, 10.0) and not reach.armed and reach.retaken == 1
    reach.synced(snapshot_id=1000, book_id=1000, now=0.0)
    assert not reach.overdue(7, 100.0) and not reach.overdue(8, 101.0)  # 2 events only
    assert not reach.overdue(1000, 102.0) and not reach.armed  # reached: disarmed for good
    reach.synced(snapshot_id=1000, book_id=1005, now=0.0)  # the buffer went past it
    assert not reach.armed


@pytest.mark.parametrize(
    "options",
    [
        {"snapshot_reach_events": 0},
        {"snapshot_reach_events": 1.5},
        {"snapshot_reach_seconds": 0},
        {"snapshot_reach_seconds": "10"},
    ],
)
def test_11_bad_reach_options_are_refused_before_anything_is_subscribed(
    options: dict[str, Any],
) -> None:
    manager = WSManager(url="ws://127.0.0.1:9/ws", **FAST)
    try:
        with pytest.raises(ValueError, match="snapshot_reach_"):
            manager.order_book("BTCUSDT", "http://127.0.0.1:9", **options)
        assert manager.get_stream_info() == []
    finally:
        manager.destroy()


def test_11_a_futures_snapshot_from_the_future_is_retaken_too() -> None:
    """The check follows the book's outcomes, so the futures procedure (``pu`` chaining,
    ``/fapi/v1/depth``) gets it as well."""
    with FakeExchange(market="usdm", seed=5) as usdm:
        routed = {k: v for k, v in FAST.items() if k != "streams_per_connection"}
        with WSManager(
            url=usdm.root_url, endpoint="usdm", rest_url=usdm.rest_url, **routed
        ) as manager:
            usdm.snapshot_ahead(10**9)
            book = manager.order_book(
                "BTCUSDT",
                min_snapshot_interval=0.05,
                snapshot_reach_events=5,
                snapshot_reach_seconds=0.3 * SCALE,
            )
            assert usdm.wait_for_open(DEPTH)
            assert _publish_until(usdm, DEPTH, book.wait_synced)
            assert (book.last_update_id or 0) > 10**9
            assert _publish_until(
                usdm, DEPTH, lambda t: book.unreached_snapshots >= 1 or bool(time.sleep(t))
            )
            usdm.snapshot_ahead(0)
            assert _publish_until(
                usdm,
                DEPTH,
                lambda t: (
                    book.wait_synced(t)
                    and (book.last_update_id or 0) == usdm.book("BTCUSDT").last_update_id
                ),
            )
            true = usdm.book("BTCUSDT")
            assert book.bids() == true.bids(1000) and book.asks() == true.asks(1000)
            assert {r.path for r in usdm.rest_requests()} == {"/fapi/v1/depth"}
