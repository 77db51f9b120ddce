"""A fault-injecting TCP proxy for tests, standard library only, on loopback.

Put it between a client and a server (``FaultProxy(upstream_port)``; connect to ``proxy.port``)
and break things on purpose, per connection or for the connections that follow::

    with FaultProxy(exchange.port) as proxy:
        manager = WSManager(url=f"ws://127.0.0.1:{proxy.port}/ws/")
        ...
        proxy.cut()                    # FIN both ways
        proxy.reset()                  # RST both ways
        proxy.set_mode(Mode.BLACKHOLE) # swallow bytes, no FIN: a half-open link
        proxy.set_mode(Mode.SLICE)     # forward one byte per write
        proxy.set_latency(0.05); proxy.set_bandwidth(10_000)

Every thread it starts ends on :meth:`close`.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field

from ..net._closing import ClosesOnExit

__all__ = ["FaultProxy", "Mode"]

_CHUNK = 65536


class Mode(enum.Enum):
    PASS = "pass"  # forward as is
    BLACKHOLE = "blackhole"  # read and discard both ways; never close
    SLICE = "slice"  # forward one byte per send()


@dataclass(eq=False)
class _Link:
    client: socket.socket
    upstream: socket.socket
    mode: Mode
    latency: float
    bandwidth: float | None  # bytes per second
    closed: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class FaultProxy(ClosesOnExit):
    """Listens on 127.0.0.1 (port 0 = any free port) and forwards to ``upstream``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", port: int = 0) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()  # guards _links and the defaults below
        self._links: list[_Link] = []
        self._mode = Mode.PASS
        self._latency = 0.0
        self._bandwidth: float | None = None
        self._refuse = False
        self.accepted = 0
        self._stop = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="wsmanager-faultproxy", daemon=True
        )
        self._acceptor.start()

    # -- controls --------------------------------------------------------------------------------

    def set_mode(self, mode: Mode, *, existing: bool = True, new: bool = True) -> None:
        """Use ``mode`` for open connections (``existing``) and for the next ones (``new``)."""
        with self._lock:
            if new:
                self._mode = mode
            if existing:
                for link in self._links:
                    link.mode = mode

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = seconds
            for link in self._links:
                link.latency = seconds

    def set_bandwidth(self, bytes_per_second: float | None) -> None:
        with self._lock:
            self._bandwidth = bytes_per_second
            for link in self._links:
                link.bandwidth = bytes_per_second

    def refuse(self, refuse: bool = True) -> None:
        """Accept and immediately reset new connections (like a refused port, but later)."""
        with self._lock:
            self._refuse = refuse

    def cut(self) -> int:
        """Close every open connection cleanly (FIN to both sides); return how many."""
        return self._end_all(reset=False)

    def reset(self) -> int:
        """Abort every open connection (RST to both sides); return how many."""
        return self._end_all(reset=True)

    def open_connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed.is_set())

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:  # before ending them: a finished link removes itself from the list
            threads = [link.thread for link in self._links if link.thread is not None]
        self._end_all(reset=True)
        for thread in threads:
            thread.join()

    # -- internals -------------------------------------------------------------------------------

    def _end_all(self, *, reset: bool) -> int:
        with self._lock:
            links = [link for link in self._links if not link.closed.is_set()]
        for link in links:
            _end(link, reset=reset)
        return len(links)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                refuse = self._refuse
                self.accepted += 1
            if refuse:
                _abort(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                _abort(client)
                continue
            for sock in (client, upstream):
                sock.setblocking(True)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                link = _Link(client, upstream, self._mode, self._latency, self._bandwidth)
                link.thread = threading.Thread(
                    target=self._pump, args=(link,), name="wsmanager-faultproxy-link", daemon=True
                )
                self._links.append(link)
            link.thread.start()

    def _pump(self, link: _Link) -> None:
        peers = {link.client: link.upstream, link.upstream: link.client}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            try:
                while not link.closed.is_set() and not self._stop.is_set():
                    for key, _ in selector.select(0.05):
                        source = key.fileobj
                        assert isinstance(source, socket.socket)
                        data = source.recv(_CHUNK)
                        if not data:  # FIN from one side: pass it on, keep the other way open
                            selector.unregister(source)
                            if link.mode is not Mode.BLACKHOLE:
                                with contextlib.suppress(OSError):
                                    peers[source].shutdown(socket.SHUT_WR)
                            if not selector.get_map():
                                return
                            continue
                        self._forward(link, peers[source], data)
            except OSError:
                pass
            finally:
                _end(link, reset=False)
                with self._lock:  # forget it: a long soak makes thousands of links
                    self._links.remove(link)

    def _forward(self, link: _Link, target: socket.socket, data: bytes) -> None:
        if link.mode is Mode.BLACKHOLE:
            return
        if link.latency and link.closed.wait(link.latency):
            return
        step = 1 if link.mode is Mode.SLICE else len(data)
        if link.bandwidth:
            step = max(1, min(step, int(link.bandwidth / 20)))  # ~20 writes a second
        for start in range(0, len(data), step):
            target.sendall(data[start : start + step])
            if link.bandwidth and link.closed.wait(step / link.bandwidth):
                return


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _end(link: _Link, *, reset: bool) -> None:
    if link.closed.is_set():
        return
    link.closed.set()
    for sock in (link.client, link.upstream):
        if reset:
            _abort(sock)
        else:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
