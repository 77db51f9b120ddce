"""Opening the TCP (and TLS) socket that websocket-client then speaks WebSocket over.

websocket-client has no per-connection handshake timeout (only a process-wide default), so we
open the socket ourselves, with a deadline, and hand it to ``WebSocketApp(socket=...)``. The
socket keeps that timeout while reading, so a frame that stalls half-way also ends the connection.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

__all__ = ["ConnectAborted", "open_socket", "shutdown_quietly"]

_POLL = 0.05  # seconds between checks of the stop event while a TCP connect is in progress


class ConnectAborted(Exception):
    """The stop event was set while the socket was being opened."""


def _default_port(scheme: str) -> int:
    return 443 if scheme == "wss" else 80


def open_socket(
    url: str,
    *,
    timeout: float,
    stop: threading.Event,
    ssl_context: ssl.SSLContext | None = None,
) -> socket.socket:
    """Connect to the host of ``url`` within ``timeout`` seconds; wrap it in TLS for ``wss://``.

    Raises ``TimeoutError`` past the deadline, ``ConnectAborted`` when ``stop`` is set, and
    ``OSError``/``ssl.SSLError`` for refused connections and failed TLS handshakes.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _default_port(parts.scheme)
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    for family, socktype, proto, _name, address in socket.getaddrinfo(
        host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP
    ):
        sock = socket.socket(family, socktype, proto)
        try:
            _connect(sock, address, deadline, stop)
        except (ConnectAborted, TimeoutError):
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remaining = max(deadline - time.monotonic(), 0.001)
        sock.settimeout(remaining)
        if parts.scheme == "wss":
            context = ssl_context or ssl.create_default_context()
            try:
                tls = context.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
            sock = tls
        return sock
    raise last_error or OSError(f"could not resolve {host!r}")


def _connect(sock: socket.socket, address: object, deadline: float, stop: threading.Event) -> None:
    """A non-blocking connect, polled so that ``stop`` can cut it short."""
    sock.setblocking(False)
    code = sock.connect_ex(address)  # type: ignore[arg-type]
    if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
        raise OSError(code, f"connect to {address}: {errno.errorcode.get(code, code)}")
    if code != 0:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_WRITE)
            while True:
                if stop.is_set():
                    raise ConnectAborted()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"TCP connect to {address} timed out")
                if selector.select(min(remaining, _POLL)):
                    break
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {address}: {errno.errorcode.get(code, code)}")
    sock.setblocking(True)


def shutdown_quietly(sock: socket.socket) -> None:
    """Shut both directions down, waking any thread blocked on ``sock``; ignore a closed socket."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
