"""Opening the TCP (and TLS) socket that websocket-client then speaks WebSocket over.

One :class:`Deadline` (monotonic) bounds the whole opening: DNS, TCP connect, TLS and, later, the
HTTP upgrade (:mod:`wsmanager.guard`). Each socket is handed to ``publish`` as soon as it exists,
so that the owner's ``stop()`` can shut it down and wake a blocked connect or TLS handshake.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import ConnectionFailedError

__all__ = ["ConnectAborted", "Deadline", "open_socket", "resolve", "shutdown_quietly"]

_POLL = 0.05  # seconds between checks of the stop event while waiting


class ConnectAborted(Exception):
    """The stop event was set while the socket was being opened."""


@dataclass
class Deadline:
    """A point in ``time.monotonic()`` time that several blocking steps share."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def timeout(self, minimum: float = 0.001) -> float:
        """The remaining time as a socket timeout; raises ``TimeoutError`` when it has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            raise TimeoutError("the connection's deadline passed")
        return max(remaining, minimum)


def _default_port(scheme: str) -> int:
    return 443 if scheme in ("wss", "https") else 80


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


AddressInfo = tuple[Any, ...]


def resolve(host: str, port: int, deadline: Deadline, stop: threading.Event) -> list[AddressInfo]:
    """``getaddrinfo`` bounded by ``deadline`` and ``stop`` (a host name is resolved on a
    short-lived thread; an IP literal needs none)."""
    if _is_ip(host):
        return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    done = threading.Event()
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, socket.IPPROTO_TCP))
        except BaseException as exc:  # handed to the waiting thread
            result.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="wsmanager-dns", daemon=True).start()
    while not done.wait(min(_POLL, max(deadline.remaining(), 0.0))):
        if stop.is_set():
            raise ConnectAborted()
        if deadline.remaining() <= 0:
            raise TimeoutError(f"resolving {host!r} took longer than the deadline")
    value = result[0]
    if isinstance(value, BaseException):
        raise value
    return list(value)


def open_socket(
    url: str,
    *,
    deadline: Deadline,
    stop: threading.Event,
    publish: Callable[[socket.socket | None], None],
    ssl_context: ssl.SSLContext | None = None,
) -> socket.socket:
    """Connect to the host of ``url`` before ``deadline``; wrap it in TLS for ``wss://``.

    Raises ``ConnectAborted`` when ``stop`` is set, and :class:`ConnectionFailedError` (with the
    original error as ``__cause__``) for resolution, connect, TLS and deadline failures.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _default_port(parts.scheme)
    try:
        addresses = resolve(host, port, deadline, stop)
    except (OSError, TimeoutError) as exc:
        raise ConnectionFailedError(f"could not resolve {host!r}: {exc}") from exc
    last_error: BaseException | None = None
    for family, socktype, proto, _name, address in addresses:
        sock = socket.socket(family, socktype, proto)
        publish(sock)
        try:
            _connect(sock, address, deadline, stop)
        except ConnectAborted:
            sock.close()
            raise
        except (OSError, TimeoutError) as exc:
            sock.close()
            last_error = exc
            if isinstance(exc, TimeoutError):
                break
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "wss":
            sock = _start_tls(sock, host, ssl_context, deadline, stop, publish)
        return sock
    reason = f"could not connect to {host}:{port}: {last_error or 'no address'}"
    raise ConnectionFailedError(reason) from last_error


def _connect(
    sock: socket.socket, address: object, deadline: Deadline, stop: threading.Event
) -> None:
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
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise TimeoutError(f"TCP connect to {address} timed out")
                if selector.select(min(remaining, _POLL)):
                    break
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, f"connect to {address}: {errno.errorcode.get(code, code)}")
    sock.setblocking(True)


def _start_tls(
    sock: socket.socket,
    host: str,
    context: ssl.SSLContext | None,
    deadline: Deadline,
    stop: threading.Event,
    publish: Callable[[socket.socket | None], None],
) -> socket.socket:
    context = context or ssl.create_default_context()
    try:
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:
        sock.close()
        raise ConnectionFailedError(f"TLS set-up failed: {exc}") from exc
    publish(tls)  # from here stop() shuts this socket down, waking the handshake below
    try:
        if stop.is_set():
            raise ConnectAborted()
        tls.settimeout(deadline.timeout())
        tls.do_handshake()
    except ConnectAborted:
        tls.close()
        raise
    except (OSError, ValueError, AttributeError) as exc:
        tls.close()
        if stop.is_set():
            raise ConnectAborted() from None
        if isinstance(exc, (TimeoutError, socket.timeout)):
            raise ConnectionFailedError("TLS handshake timed out") from exc
        raise ConnectionFailedError(f"TLS handshake failed: {exc}") from exc
    return tls


def shutdown_quietly(sock: socket.socket | None) -> None:
    """Shut both directions down, waking any thread blocked on ``sock``; ignore a closed socket.

    Calls ``socket.socket.shutdown`` directly: ``SSLSocket.shutdown`` would first drop its TLS
    state under a thread that may be in the middle of a TLS handshake.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
