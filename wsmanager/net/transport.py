"""Opening the TCP (and TLS) socket that websocket-client then speaks WebSocket over.

One :class:`Deadline` (monotonic) bounds the whole opening: DNS, TCP connect, the proxy's
handshake (:mod:`wsmanager.proxy`), TLS and, later, the HTTP upgrade (:mod:`wsmanager.net.guard`).
Each socket is handed to ``publish`` as soon as it exists, so that the owner's ``stop()`` can
shut it down and wake a blocked connect, proxy handshake or TLS handshake.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from .._redact import redact_url
from ..errors import ConnectionFailedError
from ..proxy import ProxyError, ProxyURL, proxy_for
from .deadline import Deadline
from .tunnel import connect_through

__all__ = [
    "ConnectAborted",
    "Deadline",
    "open_socket",
    "resolve",
    "shutdown_quietly",
    "tls_context",
]

log = logging.getLogger("wsmanager")

_POLL = 0.05  # seconds between checks of the stop event while waiting


class ConnectAborted(Exception):
    """The stop event was set while the socket was being opened."""


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
    proxy: str | None = None,
) -> socket.socket:
    """Connect to the host of ``url`` before ``deadline``, through ``proxy`` (the ``proxy``
    option: None, ``"env"`` or a URL, see :mod:`wsmanager.proxy`) if one applies; wrap the
    connection in TLS for ``wss://``.

    Raises ``ConnectAborted`` when ``stop`` is set, and :class:`ConnectionFailedError` (with the
    original error as ``__cause__``) for resolution, connect, proxy, TLS and deadline failures;
    :class:`~wsmanager.proxy.ProxyError` when the proxy is what failed.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or _default_port(parts.scheme)
    try:
        via = proxy_for(proxy, url)
    except ValueError as exc:  # an environment variable changed since the manager was made
        raise ConnectionFailedError(f"invalid proxy setting: {exc}") from exc
    if via is None:
        sock = _open_tcp(host, port, deadline, stop, publish)
    else:
        sock = _open_tunnel(via, host, port, deadline, stop, publish)
    if parts.scheme == "wss":
        sock = _start_tls(sock, host, ssl_context, deadline, stop, publish)
    return sock


def _open_tcp(
    host: str,
    port: int,
    deadline: Deadline,
    stop: threading.Event,
    publish: Callable[[socket.socket | None], None],
    proxy: ProxyURL | None = None,
) -> socket.socket:
    """A TCP connection to ``host:port`` (the exchange, or ``proxy``), published at once."""
    try:
        addresses = resolve(host, port, deadline, stop)
    except (OSError, TimeoutError) as exc:
        raise _failure(proxy, f"could not resolve {host!r}: {exc}") from exc
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
        return sock
    reason = f"could not connect to {host}:{port}: {last_error or 'no address'}"
    raise _failure(proxy, reason) from last_error


def _failure(proxy: ProxyURL | None, reason: str) -> ConnectionFailedError:
    return ConnectionFailedError(reason) if proxy is None else ProxyError(proxy.display, reason)


def _open_tunnel(
    proxy: ProxyURL,
    host: str,
    port: int,
    deadline: Deadline,
    stop: threading.Event,
    publish: Callable[[socket.socket | None], None],
) -> socket.socket:
    """TCP to the proxy, then its handshake to ``host:port``, all under ``deadline``."""
    address = None
    if proxy.scheme == "socks5" and not _is_ip(host):  # socks5h: the proxy resolves the name
        try:
            address = str(resolve(host, port, deadline, stop)[0][4][0])
        except (OSError, TimeoutError) as exc:
            raise ConnectionFailedError(f"could not resolve {host!r}: {exc}") from exc
    sock = _open_tcp(proxy.host, proxy.port, deadline, stop, publish, proxy)
    try:
        if stop.is_set():
            raise ConnectAborted()
        connect_through(sock, proxy, host, port, deadline, address=address)
    except ConnectAborted:
        sock.close()
        raise
    except ConnectionFailedError:
        sock.close()
        if stop.is_set():  # stop() shut the socket down under the handshake
            raise ConnectAborted() from None
        raise
    sock.settimeout(None)
    log.debug("tunnel to %s:%s open through %s", host, port, proxy.display)
    return sock


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


def tls_context(verify: bool, given: ssl.SSLContext | None, url: str) -> ssl.SSLContext | None:
    """The TLS context for ``wss://`` connections: ``given`` (None: the default, verifying);
    with ``verify`` off, a context of our own that verifies nothing (never ``given`` changed:
    ValueError), announced by a warning naming ``url``."""
    if verify:
        return given
    if given is not None:
        raise ValueError(
            "verify_tls=False cannot be combined with ssl_context: wsmanager never changes "
            "a context it is given; turn verification off on your own context instead"
        )
    log.warning(
        "TLS certificate and hostname verification is OFF for %s (verify_tls=False): "
        "anyone on the path can read and forge this data",
        redact_url(url),
    )
    context = ssl.create_default_context()  # our own: nobody else shares it
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
