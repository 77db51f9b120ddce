"""Bounds on reading: what a connection holds between its socket and its streams' buffers, a
fragmented message, gap reports against the drop-oldest bound, and pongs under the message gate.

Issue 17, findings 7, 8, 9 and 13 ("pongs are counted after the fact"); each test was seen
failing on the code before.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import struct
import threading
import time
from typing import Any

from conftest import FAST, SCALE, Recorder, wait_for
from hostile import Peer, ScriptedServer, frame

from wsmanager import WSManager
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Peak:
    """The highest RSS seen by a sampling thread until stopped."""

    def __init__(self) -> None:
        self.base = _rss_mib()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, _rss_mib())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak - self.base


def _read_client_frames(peer: Peer, seconds: float) -> list[tuple[int, bytes]]:
    """The client's frames (opcode, unmasked payload) for ``seconds``."""
    peer.sock.settimeout(0.02)
    data = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not peer.stop.is_set():
        try:
            chunk = peer.sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    frames = []
    while len(data) >= 6:
        length = data[1] & 0x7F
        offset = 2
        if length == 126:
            length = struct.unpack("!H", data[2:4])[0]
            offset = 4
        key = data[offset : offset + 4]
        payload = bytes(
            b ^ key[i % 4] for i, b in enumerate(data[offset + 4 : offset + 4 + length])
        )
        frames.append((data[0] & 0x0F, payload))
        data = data[offset + 4 + length :]
    return frames


# -- 7: reading is bounded -----------------------------------------------------------------------


def test_7_a_flooding_server_does_not_become_rss() -> None:
    """256 MiB written as fast as loopback goes, into a callback that is blocked: the reader
    holds a few MiB, the stream's buffer its bound (1 MiB), nothing else grows."""
    message = json.dumps({"e": "trade", "t": 1, "pad": "x" * (60 * 1024)}).encode()
    chunk = frame(message) * 64  # ~4 MiB
    total = 256 * 2**20
    sent = threading.Event()

    def flood(peer: Peer) -> None:
        peer.upgrade()
        written = 0
        while written < total and peer.send(chunk):
            written += len(chunk)
        sent.set()
        peer.stop.wait(10 * SCALE)

    release = threading.Event()
    with ScriptedServer(flood) as server:
        manager = WSManager(
            url=server.url(),
            **{
                **FAST,
                "max_message_size": 256 * 1024,
                "max_buffered_bytes": 1024 * 1024,
                "max_backpressure": 0.1 * SCALE,
            },
        )
        try:
            peak = Peak()
            manager.subscribe(TRADE, lambda m: release.wait(10 * SCALE))
            assert sent.wait(60 * SCALE), "the client never read the flood"
            grown = peak.stop()
        finally:
            release.set()
            manager.destroy()
    assert grown < 64, f"RSS grew by {grown:.0f} MiB while reading a flood"


# -- 8: a fragmented message is bounded as its fragments arrive ----------------------------------


def test_8_endless_continuation_frames_end_with_1009_quickly() -> None:
    fragment = b"x" * 65536
    outcome: dict[str, Any] = {}

    def endless(peer: Peer) -> None:
        peer.upgrade()
        if "started" in outcome:
            return  # the reconnect after the 1009: not measured
        outcome["started"] = True
        peer.send(frame(b'{"e":"trade","pad":"', fin=False))
        peer.sock.settimeout(5 * SCALE)
        started = time.monotonic()
        sent = 0
        while sent < 2 * 2**30 and not peer.stop.is_set():  # 2 GiB at most
            if select.select([peer.sock], [], [], 0)[0]:  # the client answered
                with contextlib.suppress(OSError):
                    outcome["answer"] = peer.sock.recv(64)
                break
            if not peer.send(frame(fragment, opcode=0x0, fin=False)):
                break
            sent += len(fragment)
        outcome["sent"] = sent
        outcome["seconds"] = time.monotonic() - started

    with ScriptedServer(endless) as server:
        manager = WSManager(url=server.url(), **{**FAST, "max_message_size": 1024 * 1024})
        try:
            manager.subscribe(TRADE, lambda m: None)
            assert wait_for(lambda: "seconds" in outcome, 30)
            assert wait_for(lambda: manager.get_stream_info()[0].oversized_messages >= 1)
        finally:
            manager.destroy()
    assert outcome["sent"] < 8 * 2**20, outcome["sent"]
    answer = outcome.get("answer", b"")
    if answer:  # (an RST may overtake it: the client closes with our fragments unread)
        assert answer[:1] == b"\x88"  # a close frame...
        key = answer[2:6]
        code = bytes(b ^ key[i % 4] for i, b in enumerate(answer[6:8]))
        assert struct.unpack("!H", code)[0] == 1009  # ...with "message too big"


# -- 9: gap reports never disable the drop-oldest bound ------------------------------------------


def test_9_a_gap_report_at_the_head_keeps_the_bound(exchange: FakeExchange) -> None:
    manager = WSManager(
        url=exchange.url, **{**FAST, "max_buffered_messages": 100, "max_backpressure": 0}
    )
    try:
        release = threading.Event()
        recorder = Recorder()

        def blocked(message: Any) -> None:
            recorder(message)
            release.wait(10 * SCALE)

        manager.subscribe(TRADE, blocked)
        assert wait_for(lambda: exchange.publish(TRADE) > 0 and bool(recorder.messages))
        exchange.skip(TRADE, 5)  # the next message reveals a gap: a report in front of it
        exchange.publish(TRADE, count=2_000)
        assert wait_for(lambda: manager.get_stream_info()[0].dropped_messages >= 1_800, 10)
        info = manager.get_stream_info()[0]
        assert info.buffered_messages <= 101  # 100 messages and the gap report
        gaps: list[Any] = []
        manager.on_gap(gaps.append)
        release.set()
        assert wait_for(lambda: bool(gaps))  # the report itself was kept
    finally:
        release.set()
        manager.destroy()


# -- 13: pongs are counted before they are sent --------------------------------------------------


def test_13_pongs_never_exceed_the_client_message_rate() -> None:
    first_second: list[tuple[int, bytes]] = []
    later: list[tuple[int, bytes]] = []
    finished = threading.Event()

    def ping_flood(peer: Peer) -> None:
        peer.upgrade()
        if finished.is_set():
            return  # a reconnect after the script: not measured
        for number in range(30):
            peer.send(frame(str(number).encode(), opcode=0x9))
        first_second.extend(_read_client_frames(peer, 1.0))
        later.extend(_read_client_frames(peer, 1.5))
        finished.set()

    with ScriptedServer(ping_flood) as server:
        manager = WSManager(
            url=server.url(), **{**FAST, "ping_interval": 20.0, "ping_timeout": 10.0}
        )
        try:
            manager.subscribe(TRADE, lambda m: None)
            assert finished.wait(10 * SCALE)
        finally:
            manager.destroy()
    pongs = [payload for opcode, payload in first_second if opcode == 0xA]
    assert pongs, first_second
    # max_client_messages_per_second is 4 (the exchange allows 5): 30 pings, one window
    assert len(pongs) <= 4, pongs
    everything = [payload for opcode, payload in first_second + later if opcode == 0xA]
    assert everything[-1] == b"29"  # the latest ping is answered (when the window allows)
