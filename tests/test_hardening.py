"""The connection layer against hostile servers and misuse: one test per defect of issue 10.

Each test names the defect it guards (#n in the issue) and was seen to fail on the code before.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import threading
import time
from collections.abc import Callable

import pytest
from conftest import FAST, SCALE, Recorder, wait_for
from hostile import Peer, ScriptedServer, frame

from wsmanager import (
    ConnectionFailedError,
    ConnectionLostError,
    ConnectionState,
    HandshakeFailedError,
    RetriesExhaustedError,
    WSManager,
)
from wsmanager.net import connection as connection_module
from wsmanager.net import socket_owner as socket_owner_module
from wsmanager.net.boundary import MAX_RETRY_AFTER
from wsmanager.net.limits import HOST_BUDGETS
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("wsmanager-reader-")]


# -- #1 one exit path: no zombie stream --------------------------------------------------------


def test_1_a_huge_retry_after_is_clamped_and_the_stream_waits(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(429, {"Retry-After": "99999999999"})
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert wait_for(lambda: manager.get_stream_info()[0].retry_attempt == 1)
    host = "127.0.0.1"  # every port of the host: one budget
    assert MAX_RETRY_AFTER - 60 < HOST_BUDGETS.paused_for(host) <= MAX_RETRY_AFTER
    assert [t.is_alive() for t in _reader_threads()] == [True]  # waiting, not dead
    assert manager.get_connection_status() is ConnectionState.CONNECTING
    assert recorder.errors == []
    started = time.monotonic()
    manager.destroy()
    assert time.monotonic() - started < 1.0 * SCALE
    HOST_BUDGETS.reset()


def test_1_a_bug_in_the_reader_thread_is_reported_not_a_zombie(
    exchange: FakeExchange, make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("a bug in wsmanager")

    monkeypatch.setattr(socket_owner_module, "open_socket", broken)
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: len(r.errors) == 1)
    (error,) = recorder.errors
    assert isinstance(error, RetriesExhaustedError)
    assert "a bug in wsmanager" in str(error.last_error)
    assert manager.get_active_streams_count() == 0
    assert not manager.health().healthy


# -- #2 the final status ---------------------------------------------------------------------


def test_2_destroy_always_delivers_the_final_disconnected_status(exchange: FakeExchange) -> None:
    for _ in range(30):
        manager = WSManager(url=exchange.url, **FAST)
        states: list[ConnectionState] = []
        connected = threading.Event()

        def on_status(
            state: ConnectionState,
            states: list[ConnectionState] = states,
            connected: threading.Event = connected,
        ) -> None:
            states.append(state)
            if state is ConnectionState.CONNECTED:
                connected.set()

        manager.on_connection_status(on_status)
        manager.subscribe(TRADE, lambda message: None)
        assert connected.wait(5 * SCALE)
        manager.destroy()
        assert states[-1] is ConnectionState.DISCONNECTED, states


# -- #3 and #4 one deadline, interruptible ------------------------------------------------------


def test_3_destroy_cuts_a_stalled_tls_handshake_short() -> None:
    def never_speak(peer: Peer) -> None:
        peer.stop.wait(30)

    with ScriptedServer(never_speak) as server:
        manager = WSManager(
            url=server.url().replace("ws://", "wss://"), **{**FAST, "handshake_timeout": 8.0}
        )
        manager.subscribe(TRADE, lambda message: None)
        assert server.accepted_event.wait(5 * SCALE)
        time.sleep(0.1)  # the client is now inside the TLS handshake (nothing to wait on)
        started = time.monotonic()
        manager.destroy()
        assert time.monotonic() - started < 0.5 * SCALE


def test_4_a_trickled_upgrade_answer_is_bounded_by_one_deadline() -> None:
    def trickle(peer: Peer) -> None:
        peer.read_request()
        peer.trickle(peer.upgrade_response(), 0.2)  # ~130 bytes: 26 s if it were allowed

    with ScriptedServer(trickle) as server:
        recorder = Recorder()
        manager = WSManager(
            url=server.url(), **{**FAST, "handshake_timeout": 1.0, "max_retry_attempts": 1}
        )
        started = time.monotonic()
        manager.subscribe(TRADE, recorder, recorder.on_error)
        assert recorder.wait(lambda r: bool(r.errors), 5)
        held = time.monotonic() - started
        manager.destroy()
    assert held < 1.0 * SCALE + 0.5
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError)
    assert isinstance(error.last_error, HandshakeFailedError)
    assert "in time" in str(error.last_error)


# -- #5 the caller's SSLContext ---------------------------------------------------------------


def test_5_verify_tls_false_never_changes_the_callers_context() -> None:
    context = ssl.create_default_context()
    with pytest.raises(ValueError, match="never changes"):
        WSManager(url="wss://127.0.0.1:9/ws/", ssl_context=context, verify_tls=False)
    assert context.check_hostname and context.verify_mode is ssl.CERT_REQUIRED
    WSManager(url="wss://127.0.0.1:9/ws/", verify_tls=False).destroy()


# -- #6 idle time is monotonic ----------------------------------------------------------------


def test_6_a_wall_clock_jump_does_not_make_a_busy_stream_idle(
    exchange: FakeExchange, make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert recorder.wait_messages(1)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600.0)  # NTP step, VM resume
    assert manager.force_cleanup_idle_streams(idle_timeout=300) == 0
    assert manager.get_active_streams_count() == 1


# -- #8 a clean close -------------------------------------------------------------------------


def test_8_unsubscribe_and_destroy_close_with_1000(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    unsubscribe = manager.subscribe(TRADE, lambda message: None)
    # Open on our side too: before the upgrade there is no close frame to send.
    assert wait_for(lambda: manager.get_connection_status() is ConnectionState.CONNECTED)
    unsubscribe()
    assert exchange.wait_for_open(TRADE, 0)
    assert exchange.wait_until(lambda: exchange.close_codes(TRADE) == [1000])
    manager.subscribe("ethusdt@trade", lambda message: None)
    assert wait_for(lambda: manager.get_connection_status() is ConnectionState.CONNECTED)
    manager.destroy()
    assert exchange.wait_until(lambda: exchange.close_codes("ethusdt@trade") == [1000])


def test_8_and_9_the_exchanges_close_code_is_kept_on_last_error(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.accept_then_close(1001)
    manager = make_manager(max_retry_attempts=2)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: bool(r.errors), 10)
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError)
    assert isinstance(error.last_error, ConnectionLostError)
    assert error.last_error.code == 1001


# -- #10 websocket-client's internals, contained ------------------------------------------------


def test_10_only_one_module_touches_websocket_clients_internals() -> None:
    package = os.path.dirname(connection_module.__file__)
    offenders = []
    for name in os.listdir(package):
        if name.endswith(".py") and name != "_wsclient.py":
            with open(os.path.join(package, name)) as source:
                text = source.read()
            if re.search(r"websocket\._(?!_)|_abnf|frame_buffer|cont_frame", text):
                offenders.append(name)
    assert offenders == []


@pytest.mark.parametrize("fast", [True, False], ids=["fast-reader", "public-reader"])
def test_10_both_readers_keep_the_size_limit_and_the_ping_timeout(
    exchange: FakeExchange,
    make_manager: MakeManager,
    monkeypatch: pytest.MonkeyPatch,
    fast: bool,
) -> None:
    from wsmanager.net import _wsclient

    monkeypatch.setattr(_wsclient, "FAST_READER_AVAILABLE", fast)
    manager = make_manager(max_message_size=1000)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert recorder.wait_messages(1)
    exchange.send_raw(TRADE, json.dumps({"big": "x" * 5000}))
    assert exchange.wait_for_attempts(TRADE, 2)
    assert wait_for(lambda: manager.get_metrics().oversized_messages == 1)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.stall(TRADE)
    assert exchange.wait_for_attempts(TRADE, 3, timeout=5)
    assert len(recorder.messages) == 1


# -- #11 and #12 hostile handshakes ------------------------------------------------------------


def test_11_a_redirect_is_a_failed_handshake_never_followed() -> None:
    elsewhere_hits: list[int] = []

    def elsewhere(peer: Peer) -> None:
        elsewhere_hits.append(1)

    with ScriptedServer(elsewhere) as other:

        def redirect(peer: Peer) -> None:
            peer.read_request()
            peer.send(
                f"HTTP/1.1 302 Found\r\nLocation: {other.url('/ws/btcusdt@trade')}\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )

        with ScriptedServer(redirect) as server:
            recorder = Recorder()
            manager = WSManager(url=server.url(), **{**FAST, "max_retry_attempts": 2})
            manager.subscribe(TRADE, recorder, recorder.on_error)
            assert recorder.wait(lambda r: bool(r.errors), 5)
            started = time.monotonic()
            manager.destroy()
            assert time.monotonic() - started < 1.0
        error = recorder.errors[0]
        assert isinstance(error, RetriesExhaustedError) and error.attempts == 2
        assert isinstance(error.last_error, HandshakeFailedError)
        assert error.last_error.status_code == 302
        assert elsewhere_hits == []


@pytest.mark.parametrize("shape", ["endless headers", "endless status line"])
def test_12_an_endless_handshake_answer_is_bounded_in_size(shape: str) -> None:
    def endless(peer: Peer) -> None:
        peer.read_request()
        if shape == "endless headers":
            peer.send(b"HTTP/1.1 101 Switching Protocols\r\n")
            chunk = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        else:
            chunk = b"HTTP/1.1 101 " + b"b" * 4096
        while not peer.stop.is_set() and peer.send(chunk * 64):
            pass

    with ScriptedServer(endless) as server:
        before = _rss_mib()
        recorder = Recorder()
        manager = WSManager(url=server.url(), **{**FAST, "max_retry_attempts": 3})
        manager.subscribe(TRADE, recorder, recorder.on_error)
        assert recorder.wait(lambda r: bool(r.errors), 5)
        manager.destroy()
        grown = _rss_mib() - before
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError)
    assert isinstance(error.last_error, HandshakeFailedError)
    assert "over" in str(error.last_error)
    assert grown < 20, f"RSS grew by {grown:.1f} MiB"


def test_12_one_header_line_a_second_is_bounded_in_time() -> None:
    def slow_headers(peer: Peer) -> float:
        peer.read_request()
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        started = time.monotonic()
        while not peer.stop.is_set() and peer.send(b"X-Slow: 1\r\n"):
            if peer.stop.wait(0.5):
                break
            if peer.wait_closed(0.01) is not None:
                break
        return time.monotonic() - started

    with ScriptedServer(slow_headers) as server:
        recorder = Recorder()
        manager = WSManager(
            url=server.url(), **{**FAST, "handshake_timeout": 2.0, "max_retry_attempts": 1}
        )
        started = time.monotonic()
        manager.subscribe(TRADE, recorder, recorder.on_error)
        assert recorder.wait(lambda r: bool(r.errors), 10)
        assert time.monotonic() - started < 2.0 * SCALE + 1.0
        manager.destroy()


# -- #13 nothing kills delivery ----------------------------------------------------------------


def test_13_deep_json_and_sys_exit_do_not_stop_a_stream(
    exchange: FakeExchange, make_manager: MakeManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsmanager.decode import decode_json_stdlib
    from wsmanager.net import datapath

    monkeypatch.setattr(datapath, "decode_json", decode_json_stdlib)
    manager = make_manager()
    exits: list[object] = []
    survivor = Recorder()

    def exits_the_process(message: object) -> None:
        exits.append(message)
        raise SystemExit(3)

    manager.subscribe(TRADE, exits_the_process)
    manager.subscribe(TRADE, survivor)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.send_raw(TRADE, "[" * 100_000 + "]" * 100_000)  # RecursionError in json
    exchange.publish(TRADE, {"e": "trade", "n": 1})
    exchange.publish(TRADE, {"e": "trade", "n": 2})
    assert survivor.wait_messages(2)
    assert len(exits) == 2
    info = manager.get_stream_info()[0]
    assert info.invalid_messages == 1 and info.callback_errors == 2
    assert info.state is ConnectionState.CONNECTED and manager.health().healthy


# -- #14 a trickled frame ---------------------------------------------------------------------


def test_14_a_frame_that_trickles_in_is_a_dead_link() -> None:
    def trickle_frame(peer: Peer) -> float | None:
        peer.upgrade()
        peer.send(frame(b"", length=10_000_000)[:10])  # announces 10 MB ...
        done = threading.Event()

        def drip() -> None:
            while not done.is_set() and not peer.stop.is_set():
                if not peer.send(b"x"):
                    return
                done.wait(0.1)

        dripper = threading.Thread(target=drip)
        dripper.start()
        closed_after = peer.wait_closed(10)  # ... and sends a byte every 0.1 s
        done.set()
        dripper.join()
        return closed_after

    with ScriptedServer(trickle_frame) as server:
        manager = WSManager(url=server.url(), **{**FAST, "max_message_size": 20_000_000})
        manager.subscribe(TRADE, lambda message: None)
        assert wait_for(lambda: len(server.results) >= 1, 10)
        manager.destroy()
    closed_after = server.results[0]
    bound = FAST["ping_interval"] + FAST["ping_timeout"] + 0.5
    assert isinstance(closed_after, float) and closed_after < bound * SCALE


# -- #15 buffers bounded in bytes ---------------------------------------------------------------


def test_15_a_slow_callback_holds_at_most_max_buffered_bytes(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(max_buffered_bytes=4_000_000, max_message_size=2_000_000)
    release = threading.Event()
    got: list[int] = []

    def slow(message: dict[str, str]) -> None:
        release.wait(10)
        got.append(len(message["pad"]))

    manager.subscribe(TRADE, slow)
    assert exchange.wait_for_open(TRADE, 1)
    for _ in range(20):
        exchange.publish(TRADE, {"pad": "x" * 1_000_000})
    assert wait_for(lambda: manager.get_stream_info()[0].messages_received == 20)
    info = manager.get_stream_info()[0]
    assert info.buffered_bytes <= 4_000_000
    # The callback thread took at most one buffer's worth (4 messages) before it blocked; every
    # other message is still buffered (within the bound) or was dropped.
    assert info.dropped_messages + info.buffered_messages >= 20 - 4
    assert info.dropped_messages >= 20 - 4 - 4
    release.set()


# -- #16 fork ------------------------------------------------------------------------------------


_FORK_SCRIPT = """
import os, sys, time, json
from wsmanager import WSManager, ManagerClosedError
manager = WSManager(url=sys.argv[1], streams_per_connection=1, connection_budget=None)
got = []
manager.subscribe("btcusdt@trade", got.append)
deadline = time.monotonic() + 5
while manager.get_connection_status().value != "connected" and time.monotonic() < deadline:
    time.sleep(0.01)
pid = os.fork()
if pid == 0:
    report = {"health": manager.health().reasons, "streams": len(manager.get_stream_info())}
    try:
        manager.subscribe("ethusdt@trade", print)
    except ManagerClosedError:
        report["subscribe"] = "refused"
    print(json.dumps(report), flush=True)
    sys.exit(0)  # a normal exit: atexit handlers run in the child
os.waitpid(pid, 0)
print("child-exited", flush=True)
sys.stdin.readline()  # the test publishes, then says go on
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print(json.dumps({"parent_got": len(got)}), flush=True)
manager.destroy()
"""


def test_16_a_forked_child_leaves_the_parents_connections_alone(exchange: FakeExchange) -> None:
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", _FORK_SCRIPT, exchange.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        child = json.loads(process.stdout.readline())
        assert child["streams"] == 0 and child["subscribe"] == "refused"
        assert "parent process" in child["health"][0]
        assert process.stdout.readline().strip() == "child-exited"
        assert exchange.open_connections() == 1  # the parent's connection survived the child
        exchange.publish(TRADE)
        process.stdin.write("\n")
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"parent_got": 1}
    finally:
        process.communicate(timeout=10)


# -- #18 health after a permanent failure ---------------------------------------------------------


def test_18_health_reports_a_stream_that_failed(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(404)
    manager = make_manager(max_retry_delay=1.0)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: bool(r.errors))
    health = manager.health()
    assert not health.healthy and "failed" in health.reasons[0]
    assert manager.get_metrics().streams_failed == 1
    assert wait_for(lambda: manager.health().healthy, 3)


# -- #19 no spinning ---------------------------------------------------------------------------


def test_19_a_server_that_fails_right_after_a_message_cannot_make_a_stream_spin() -> None:
    def one_message_then_violation(peer: Peer) -> None:
        peer.upgrade()
        peer.send(frame(b'{"e":"trade","t":1}'))
        peer.send(bytes([0x83, 0]))  # reserved opcode 3: a protocol violation
        peer.wait_closed(2)

    with ScriptedServer(one_message_then_violation) as server:
        recorder = Recorder()
        manager = WSManager(url=server.url(), **{**FAST, "max_retry_attempts": 5})
        manager.subscribe(TRADE, recorder, recorder.on_error)
        assert recorder.wait(lambda r: bool(r.errors), 10)
        manager.destroy()
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError) and error.attempts == 5
    assert isinstance(error.last_error, ConnectionFailedError)
    assert server.accepted == 5


def test_retry_after_on_429_pauses_the_whole_host(exchange: FakeExchange) -> None:
    """Not a defect of #10, but its fix: the pause is per host, not per stream."""
    exchange.reject(429, {"Retry-After": "1"})
    with WSManager(url=exchange.url, **FAST) as manager:
        manager.subscribe(TRADE, lambda message: None)
        host = "127.0.0.1"  # every port of the host: one budget
        assert wait_for(lambda: HOST_BUDGETS.paused_for(host) > 0)
        exchange.accept_normally()
        started = time.monotonic()
        manager.subscribe("ethusdt@trade", lambda message: None)  # subscribed after the 429
        assert exchange.wait_for_open("ethusdt@trade", 1, timeout=5)
        assert time.monotonic() - started >= 0.7
    HOST_BUDGETS.reset()
