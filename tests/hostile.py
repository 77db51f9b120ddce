"""Servers that misbehave on purpose, on loopback: scripted byte by byte, one thread each.

``ScriptedServer(script)`` accepts connections and runs ``script(conn)`` on a thread per
connection; ``conn`` wraps the socket with helpers (read the request, answer the upgrade, send
frames, trickle bytes). Every thread ends on ``close()``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable

from wsmanager.net._closing import ClosesOnExit

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(
    payload: bytes, opcode: int = 0x1, *, fin: bool = True, length: int | None = None
) -> bytes:
    """A server frame (unmasked); ``length`` overrides the announced payload length."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([size])
    elif size < 65536:
        head += bytes([126]) + struct.pack("!H", size)
    else:
        head += bytes([127]) + struct.pack("!Q", size)
    return head + payload


class Peer:
    """One accepted connection, as the script sees it."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self.request = b""

    def read_request(self) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        self.request = data
        return data

    def key(self) -> str:
        for line in self.request.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                return value.strip()
        return ""

    def upgrade_response(self) -> bytes:
        return (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_key(self.key())}\r\n\r\n"
        ).encode()

    def upgrade(self) -> None:
        self.read_request()
        self.sock.sendall(self.upgrade_response())

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def trickle(self, data: bytes, interval: float) -> float:
        """Send ``data`` a byte at a time; return how long the peer let it go on."""
        started = time.monotonic()
        for i in range(len(data)):
            if self.stop.is_set() or not self.send(data[i : i + 1]):
                break
            if self.stop.wait(interval):
                break
        return time.monotonic() - started

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds until the client closes (EOF/reset), reading and discarding; None if not."""
        started = time.monotonic()
        self.sock.settimeout(0.05)
        while time.monotonic() - started < timeout and not self.stop.is_set():
            try:
                if not self.sock.recv(65536):
                    return time.monotonic() - started
            except TimeoutError:
                continue
            except OSError:
                return time.monotonic() - started
        return None


class ScriptedServer(ClosesOnExit):
    """A TCP (optionally TLS) server on 127.0.0.1 running ``script`` per connection."""

    def __init__(
        self,
        script: Callable[[Peer], object],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._script = script
        self._ssl = ssl_context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.stop = threading.Event()
        self.accepted = 0
        self.accepted_event = threading.Event()
        self.results: list[object] = []
        self._lock = threading.Lock()  # guards _threads, _sockets, results
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._acceptor = threading.Thread(target=self._accept, name="hostile-server", daemon=True)
        self._acceptor.start()

    def url(self, path: str = "/ws/") -> str:
        return f"{'wss' if self._ssl else 'ws'}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._sockets.append(sock)
                thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
                self._threads.append(thread)
            self.accepted_event.set()
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_side=True)
            result = self._script(Peer(sock, self.stop))
            with self._lock:
                self.results.append(result)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
