"""Figures for the hostile-server rows of docs/reliability.md: one measurement per defect of
issue 10, on loopback, with the same servers as tests/test_hardening.py (tests/hostile.py).

    .venv/bin/python bench/hardening.py

Nothing is asserted here (the tests do that with bounds); this prints what this machine measured.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from hostile import Peer, ScriptedServer, frame

from wsmanager import ConnectionState, WSManager
from wsmanager.net.limits import HOST_BUDGETS
from wsmanager.testing import FakeExchange

FAST: dict[str, Any] = {
    "base_retry_delay": 0.05,
    "max_retry_delay": 0.2,
    "ping_interval": 0.6,
    "ping_timeout": 0.3,
    "handshake_timeout": 1.0,
    "close_timeout": 0.5,
    "streams_per_connection": 1,
    "connection_budget": None,
}
TRADE = "btcusdt@trade"


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def until_error(manager: WSManager, timeout: float = 30.0) -> float:
    failed = threading.Event()
    started = time.monotonic()
    manager.subscribe(TRADE, lambda message: None, on_error=lambda error: failed.set())
    failed.wait(timeout)
    return time.monotonic() - started


def trickled_upgrade() -> dict[str, Any]:
    def script(peer: Peer) -> None:
        peer.read_request()
        peer.trickle(peer.upgrade_response(), 0.2)

    with ScriptedServer(script) as server:
        manager = WSManager(
            url=server.url(), **{**FAST, "handshake_timeout": 1.0, "max_retry_attempts": 1}
        )
        held = until_error(manager)
        manager.destroy()
    return {"handshake_timeout": 1.0, "attempt_held_s": round(held, 2)}


def stalled_tls() -> dict[str, Any]:
    with ScriptedServer(lambda peer: peer.stop.wait(30)) as server:
        url = server.url().replace("ws://", "wss://")
        manager = WSManager(url=url, **{**FAST, "handshake_timeout": 8.0})
        manager.subscribe(TRADE, lambda message: None)
        server.accepted_event.wait(5)
        time.sleep(0.2)
        started = time.monotonic()
        manager.destroy()
        return {"handshake_timeout": 8.0, "destroy_s": round(time.monotonic() - started, 3)}


def endless_headers() -> dict[str, Any]:
    def script(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        while not peer.stop.is_set() and peer.send((b"X-Filler: " + b"a" * 1000 + b"\r\n") * 64):
            pass

    with ScriptedServer(script) as server:
        before = rss_mib()
        manager = WSManager(url=server.url(), **{**FAST, "max_retry_attempts": 20})
        took = until_error(manager)
        manager.destroy()
        grown = rss_mib() - before
        return {"attempts": 20, "seconds": round(took, 2), "rss_growth_mib": round(grown, 1)}


def slow_headers() -> dict[str, Any]:
    def script(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        while not peer.stop.is_set() and peer.send(b"X-Slow: 1\r\n"):
            if peer.stop.wait(1.0):
                break

    with ScriptedServer(script) as server:
        manager = WSManager(
            url=server.url(), **{**FAST, "handshake_timeout": 2.0, "max_retry_attempts": 1}
        )
        held = until_error(manager)
        manager.destroy()
    return {"handshake_timeout": 2.0, "attempt_held_s": round(held, 2)}


def trickled_frame() -> dict[str, Any]:
    def script(peer: Peer) -> float | None:
        peer.upgrade()
        peer.send(frame(b"", length=10_000_000)[:10])
        done = threading.Event()

        def drip() -> None:
            while not done.is_set() and peer.send(b"x"):
                done.wait(1.0)  # one byte a second

        dripper = threading.Thread(target=drip)
        dripper.start()
        closed = peer.wait_closed(30)
        done.set()
        dripper.join()
        return closed

    with ScriptedServer(script) as server:
        manager = WSManager(url=server.url(), **{**FAST, "max_message_size": 20_000_000})
        manager.subscribe(TRADE, lambda message: None)
        deadline = time.monotonic() + 30
        while not server.results and time.monotonic() < deadline:
            time.sleep(0.05)
        manager.destroy()
    return {"ping_interval+ping_timeout": 0.9, "dead_link_after_s": server.results[0]}


def redirect() -> dict[str, Any]:
    hits: list[int] = []
    with ScriptedServer(lambda peer: hits.append(1)) as other:

        def script(peer: Peer) -> None:
            peer.read_request()
            peer.send(f"HTTP/1.1 302 Found\r\nLocation: {other.url('/ws/x')}\r\n\r\n".encode())

        with ScriptedServer(script) as server:
            manager = WSManager(url=server.url(), **{**FAST, "max_retry_attempts": 3})
            until_error(manager)
            started = time.monotonic()
            manager.destroy()
            took = time.monotonic() - started
    return {"followed": len(hits), "destroy_s": round(took, 3)}


def final_status(runs: int = 30) -> dict[str, Any]:
    good = 0
    with FakeExchange() as exchange:
        for _ in range(runs):
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
            connected.wait(5)
            manager.destroy()
            good += states[-1] is ConnectionState.DISCONNECTED
    return {"runs": runs, "final_disconnected": good}


def spin() -> dict[str, Any]:
    def script(peer: Peer) -> None:
        peer.upgrade()
        peer.send(frame(b'{"e":"trade","t":1}'))
        peer.send(bytes([0x83, 0]))
        peer.wait_closed(2)

    defaults = {"base_retry_delay": 1.0, "max_retry_delay": 30.0}  # the manager's defaults
    with ScriptedServer(script) as server:
        manager = WSManager(url=server.url(), **{**FAST, **defaults, "max_retry_attempts": None})
        manager.subscribe(TRADE, lambda message: None)
        time.sleep(30)
        manager.destroy()
        return {"seconds": 30, "attempts": server.accepted, **defaults}


def big_messages() -> dict[str, Any]:
    with FakeExchange() as exchange:
        manager = WSManager(url=exchange.url, **FAST)
        release = threading.Event()
        manager.subscribe(TRADE, lambda message: release.wait(60))
        exchange.wait_for_open(TRADE, 1)
        before = rss_mib()
        payload = {"pad": "x" * (8 * 1024 * 1024 - 20)}
        for _ in range(40):
            exchange.publish(TRADE, payload)
        deadline = time.monotonic() + 60
        while manager.get_stream_info()[0].messages_received < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        info = manager.get_stream_info()[0]
        grown = rss_mib() - before
        release.set()
        manager.destroy()
    return {
        "messages": 40,
        "size_mib": 8,
        "held_mib": round(info.buffered_bytes / 2**20, 1),
        "dropped": info.dropped_messages,
        "rss_growth_mib": round(grown, 1),
    }


def huge_retry_after() -> dict[str, Any]:
    with FakeExchange() as exchange:
        exchange.reject(429, {"Retry-After": "99999999999"})
        manager = WSManager(url=exchange.url, **FAST)
        manager.subscribe(TRADE, lambda message: None)
        deadline = time.monotonic() + 5
        while not manager.get_stream_info()[0].retry_attempt and time.monotonic() < deadline:
            time.sleep(0.01)
        alive = any(t.name.startswith("wsmanager-reader-") for t in threading.enumerate())
        paused = HOST_BUDGETS.paused_for(f"127.0.0.1:{exchange.port}")
        started = time.monotonic()
        manager.destroy()
        HOST_BUDGETS.reset()
        return {
            "reader_alive": alive,
            "paused_s": round(paused),
            "destroy_s": round(time.monotonic() - started, 3),
        }


def main() -> None:
    results = {}
    for case in (
        huge_retry_after,
        final_status,
        stalled_tls,
        trickled_upgrade,
        redirect,
        endless_headers,
        slow_headers,
        trickled_frame,
        big_messages,
        spin,
    ):
        results[case.__name__] = case()
        print(case.__name__, json.dumps(results[case.__name__]), flush=True)


if __name__ == "__main__":
    main()
