"""The socket websocket-client speaks through: bounds on what an untrusted server can make it do.

:class:`SocketGuard` wraps the connected (TLS) socket that ``WebSocketApp(socket=...)`` gets.
While the opening handshake runs, it reads the server's whole HTTP response head itself, under
the connection's one :class:`~wsmanager.net.transport.Deadline` and a size limit, and:

- answers anything but ``101 Switching Protocols`` with :class:`HandshakeFailedError` carrying
  the status and headers — so a ``3xx`` is never followed (websocket-client would follow it on a
  socket we never see), and a ``429``/``418`` keeps its ``Retry-After``;
- refuses a head over ``max_head_bytes`` or not complete by the deadline (a server that trickles
  its answer or never ends its headers cannot hold or grow an attempt);
- hands websocket-client the same head to validate (``Sec-WebSocket-Accept``) and keeps any bytes
  that came after it for the frame reader.

After the handshake it is a thin pass-through, except for an optional read deadline the read
loop sets around each frame on websocket-client's public reading path.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from ..errors import HandshakeFailedError
from .deadline import Deadline

__all__ = ["MAX_HEAD_BYTES", "SocketGuard", "parse_head"]

MAX_HEAD_BYTES = 64 * 1024
_CHUNK = 4096


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """(status, reason, headers with lower-case names) of an HTTP response head."""
    text = head.decode("iso-8859-1")
    status_line, _, rest = text.partition("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HandshakeFailedError(None, f"not an HTTP response: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for line in rest.split("\r\n"):
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeFailedError(int(parts[1]), f"malformed header line {line[:80]!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers


class SocketGuard:
    """A socket as websocket-client sees it. Only the connection's reader thread uses it."""

    def __init__(
        self, sock: socket.socket, deadline: Deadline, max_head_bytes: int = MAX_HEAD_BYTES
    ) -> None:
        self.sock = sock
        self._deadline: Deadline | None = deadline
        self._max_head = max_head_bytes
        self._pending = b""  # the head, served to websocket-client from _offset on
        self._offset = 0
        self.leftover = b""  # bytes after the head, taken by the fast frame reader
        self.read_deadline: float | None = None  # monotonic; set around public-path frame reads
        self.status: int | None = None
        self.headers: dict[str, str] = {}

    # -- the handshake ---------------------------------------------------------------------------

    def _read_head(self, deadline: Deadline) -> None:
        data = bytearray()
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(data) > self._max_head:
                raise HandshakeFailedError(
                    None, f"handshake response head over {self._max_head} bytes"
                )
            remaining = deadline.remaining()
            if remaining <= 0:
                raise HandshakeFailedError(None, "handshake response not complete in time")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(_CHUNK)
            except TimeoutError:
                raise HandshakeFailedError(
                    None, "handshake response not complete in time"
                ) from None
            if not chunk:
                raise HandshakeFailedError(None, "connection closed during the handshake")
            data += chunk
        head = bytes(data[: end + 4])
        status, reason, headers = parse_head(head)
        self.status, self.headers = status, headers
        if status != 101:
            raise HandshakeFailedError(status, reason or "no upgrade", headers)
        self._pending = head
        self.leftover = bytes(data[end + 4 :])

    def handshake_done(self, *, take_leftover: bool) -> bytes:
        """End the handshake phase. With ``take_leftover``, return (and stop serving) the bytes
        that followed the head, for the fast frame reader; else keep serving them to ``recv``."""
        self._deadline = None
        self._pending = b""
        if not take_leftover:
            return b""
        leftover, self.leftover = self.leftover, b""
        return leftover

    # -- what websocket-client calls -------------------------------------------------------------

    def recv(self, bufsize: int) -> bytes:
        if self._deadline is not None:
            if self.status is None:
                self._read_head(self._deadline)
            if self._offset < len(self._pending):  # websocket-client reads it byte by byte
                data = self._pending[self._offset : self._offset + bufsize]
                self._offset += len(data)
                return data
        if self.leftover:  # public reading path: frames that came with the head
            data, self.leftover = self.leftover[:bufsize], self.leftover[bufsize:]
            return data
        if self.read_deadline is not None:
            remaining = self.read_deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("a frame did not arrive in time")
            previous = self.sock.gettimeout()
            self.sock.settimeout(min(remaining, previous) if previous else remaining)
            try:
                return self.sock.recv(bufsize)
            finally:
                self.sock.settimeout(previous)
        return self.sock.recv(bufsize)

    def send(self, data: bytes) -> int:
        return self.sock.send(data)

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def gettimeout(self) -> float | None:
        return self.sock.gettimeout()

    def settimeout(self, timeout: float | None) -> None:
        # websocket-client resets the timeout to its process-wide default (None: block forever)
        # before connecting; the deadline and the read loop own the socket's timeouts instead.
        pass

    def pending(self) -> int:
        pending = getattr(self.sock, "pending", None)
        return int(pending()) if pending is not None else 0

    def shutdown(self, how: int) -> None:
        socket.socket.shutdown(self.sock, how)

    def close(self) -> None:
        self.sock.close()

    def __getattr__(self, name: str) -> Any:  # setsockopt, _closed, getpeername, ...
        return getattr(self.sock, name)
