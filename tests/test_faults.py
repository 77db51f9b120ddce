"""Faults from a real server: drops, stalls, restarts, rejected and hanging handshakes."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from conftest import SCALE, Recorder, flows, wait_for

from wsmanager import (
    ConnectionFailedError,
    HandshakeRejectedError,
    RetriesExhaustedError,
    WSManager,
)
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


def test_abrupt_drop_and_close_frame_1001_reconnect(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.drop(TRADE)
    assert exchange.wait_for_attempts(TRADE, 2)
    assert flows(exchange, recorder)
    exchange.drop(TRADE, code=1001, reason="24h")  # the exchange's daily disconnect
    assert exchange.wait_for_attempts(TRADE, 3)
    assert flows(exchange, recorder)
    assert recorder.errors == []
    assert wait_for(lambda: manager.get_stream_info()[0].reconnects == 2)
    assert manager.get_metrics().retry_count == 2


def test_half_open_link_is_detected_by_ping_timeout_and_healed(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    stalled_at = time.monotonic()
    assert exchange.stall(TRADE) == 1
    assert exchange.wait_for_attempts(TRADE, 2, timeout=5 * SCALE)
    detected = time.monotonic() - stalled_at
    config = manager.config
    assert detected <= config.ping_interval + 2 * config.ping_timeout + 0.5 * SCALE
    assert flows(exchange, recorder)


def test_server_restart_on_the_same_port(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager(max_retry_attempts=None)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.stop_listening()
    assert wait_for(lambda: manager.get_stream_info()[0].retry_attempt >= 3)
    exchange.start_listening()
    assert flows(exchange, recorder)
    assert wait_for(lambda: manager.get_stream_info()[0].retry_attempt == 0)
    assert recorder.errors == []


def test_accept_then_close_exhausts_the_retries(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(max_retry_attempts=4)
    recorder = Recorder()
    unsubscribe = manager.subscribe(TRADE, recorder, recorder.on_error, recorder.on_complete)
    exchange.accept_then_close()
    exchange.drop(TRADE)  # whether or not the first attempt got in first
    assert recorder.wait(lambda r: len(r.errors) == 1, 10)
    (error,) = recorder.errors
    assert isinstance(error, RetriesExhaustedError)
    assert error.stream == TRADE and error.attempts == 4
    assert error.last_error is not None
    assert manager.get_active_streams_count() == 0
    assert recorder.completed == 0
    unsubscribe()  # a no-op now
    assert exchange.stats(TRADE).attempts <= 5


def test_refused_connections_exhaust_the_retries(make_manager: MakeManager) -> None:
    with socket.socket() as probe:  # a port where nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manager = make_manager(url=f"ws://127.0.0.1:{port}/ws/", max_retry_attempts=3)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: len(r.errors) == 1)
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError) and error.attempts == 3
    assert isinstance(error.last_error, ConnectionFailedError)
    assert isinstance(error.last_error.__cause__, ConnectionRefusedError)


def test_404_is_permanent_after_one_attempt(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(404, body="no such stream")
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: len(r.errors) == 1)
    error = recorder.errors[0]
    assert isinstance(error, HandshakeRejectedError)
    assert (error.stream, error.status_code) == (TRADE, 404)
    assert exchange.stats(TRADE).attempts == 1
    assert manager.get_active_streams_count() == 0


def test_503_is_retried_until_the_server_accepts(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(503)
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_attempts(TRADE, 3)
    exchange.accept_normally()
    assert flows(exchange, recorder)
    assert recorder.errors == []


def test_429_with_retry_after_is_not_retried_sooner(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(429, headers={"Retry-After": "1"})
    manager = make_manager()
    manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_attempts(TRADE, 1)
    first = time.monotonic()
    assert exchange.wait_for_attempts(TRADE, 2, timeout=5)
    assert time.monotonic() - first >= 0.95  # although max_retry_delay is 0.2 s


def test_418_is_retried(exchange: FakeExchange, make_manager: MakeManager) -> None:
    exchange.reject(418)
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_attempts(TRADE, 2)
    assert recorder.errors == []


def test_a_handshake_that_never_answers_times_out_and_is_retried(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.hang_handshakes()
    manager = make_manager(handshake_timeout=0.3 * SCALE)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_attempts(TRADE, 2, timeout=3 * SCALE)
    exchange.accept_normally()
    assert flows(exchange, recorder)


def test_unsubscribe_cuts_a_backoff_wait_short(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(503)
    manager = make_manager(base_retry_delay=30.0, max_retry_delay=60.0)
    unsubscribe = manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_attempts(TRADE, 1)
    assert wait_for(lambda: manager.get_stream_info()[0].retry_attempt == 1)
    started = time.monotonic()
    unsubscribe()
    reader = [t for t in threading.enumerate() if t.name == f"wsmanager-reader-{TRADE}"]
    for thread in reader:
        thread.join(1.0)
    assert not any(t.is_alive() for t in reader)
    assert time.monotonic() - started < 1.0


def test_destroy_during_backoff_and_during_handshake(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(503, stream="waiting@trade")
    exchange.hang_handshakes(stream="hanging@trade")
    manager = make_manager(base_retry_delay=30.0, max_retry_delay=60.0, handshake_timeout=30.0)
    manager.subscribe("waiting@trade", Recorder())
    manager.subscribe("hanging@trade", Recorder())
    assert exchange.wait_for_attempts("waiting@trade", 1)
    assert exchange.wait_for_attempts("hanging@trade", 1)
    started = time.monotonic()
    manager.destroy()
    assert time.monotonic() - started < 1.0
    attempts = exchange.total_attempts()
    time.sleep(0.3)  # nothing to wait for: checking that nothing happens
    assert exchange.total_attempts() == attempts


def test_health_turns_unhealthy_when_a_stream_cannot_connect(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(max_retry_attempts=None)
    manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    assert manager.health().healthy and manager.health().reasons == []
    exchange.stop_listening()
    assert wait_for(lambda: not manager.health().healthy, 3)
    reasons = manager.health().reasons
    assert len(reasons) == 1 and TRADE in reasons[0] and "max_retry_delay" in reasons[0]
    exchange.start_listening()
    assert wait_for(lambda: manager.health().healthy, 3)
