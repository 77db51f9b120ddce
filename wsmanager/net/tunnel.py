"""Reaching the exchange through an HTTP CONNECT or SOCKS5 proxy (stdlib only).

The ``proxy`` option (``None``, ``"env"`` or a URL) is read by :mod:`wsmanager.proxy`.
:func:`connect_through` runs the proxy's handshake on a socket already connected to the proxy,
every send and receive bounded by the connection's one deadline; the caller owns the socket (it
publishes it, so ``stop()`` can cut the handshake short) and starts TLS to the target afterwards.
Credentials never appear in a message, an exception or a ``repr``: :attr:`ProxyURL.display`
is the redacted form.
"""

from __future__ import annotations

import base64
import ipaddress
import socket

from ..proxy import ProxyAuthError, ProxyError, ProxyURL, host_port
from .deadline import Deadline

__all__ = ["MAX_PROXY_HEAD_BYTES", "connect_through"]

MAX_PROXY_HEAD_BYTES = 16 * 1024  # the proxy's answer to CONNECT (status line and headers)
_CHUNK = 4096

_SOCKS_REPLIES = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


# -- the handshakes ---------------------------------------------------------------------------


def connect_through(
    sock: socket.socket,
    proxy: ProxyURL,
    host: str,
    port: int,
    deadline: Deadline,
    *,
    address: str | None = None,
) -> None:
    """Open a tunnel to ``host:port`` through ``proxy`` over ``sock`` (connected to the proxy).

    ``address`` is the target's IP address when it was resolved here (``socks5://``). Raises
    :class:`ProxyError` (or :class:`ProxyAuthError`); socket errors and the deadline become
    ``ProxyError`` with the original as ``__cause__``.
    """
    try:
        if proxy.scheme == "http":
            _http_connect(sock, proxy, host, port, deadline)
        else:
            _socks5_connect(sock, proxy, host, port, deadline, address)
    except ProxyError:
        raise
    except TimeoutError as exc:
        raise ProxyError(
            proxy.display,
            "no answer to the proxy handshake before the deadline (handshake_timeout)",
        ) from exc
    except OSError as exc:
        raise ProxyError(proxy.display, f"proxy handshake failed: {exc}") from exc


def _send(sock: socket.socket, data: bytes, deadline: Deadline) -> None:
    sock.settimeout(deadline.timeout())
    sock.sendall(data)


def _recv_exact(sock: socket.socket, size: int, deadline: Deadline, proxy: ProxyURL) -> bytes:
    data = b""
    while len(data) < size:
        sock.settimeout(deadline.timeout())
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProxyError(proxy.display, "the proxy closed the connection during the handshake")
        data += chunk
    return data


def _http_connect(
    sock: socket.socket, proxy: ProxyURL, host: str, port: int, deadline: Deadline
) -> None:
    authority = host_port(host if host.isascii() else host.encode("idna").decode("ascii"), port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if proxy.username is not None:
        secret = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(secret).decode("ascii"))
    _send(sock, ("\r\n".join(lines) + "\r\n\r\n").encode("ascii"), deadline)
    head = _read_head(sock, proxy, deadline)
    status_line = head.split(b"\r\n", 1)[0].decode("iso-8859-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProxyError(proxy.display, f"not an HTTP proxy answer: {status_line[:80]!r}")
    status = int(parts[1])
    if 200 <= status < 300:
        return
    phrase = (parts[2] if len(parts) > 2 else "").strip()[:80]
    if status in (401, 407):  # 407 is the standard; tinyproxy answers wrong ones with 401
        reason = (
            f"the proxy refused the credentials (HTTP {status})"
            if proxy.username is not None
            else f"the proxy requires credentials (HTTP {status}); put them in the proxy URL"
        )
        raise ProxyAuthError(proxy.display, reason, status_code=status)
    raise ProxyError(
        proxy.display,
        f"the proxy answered CONNECT {authority} with HTTP {status} {phrase!r}",
        status_code=status,
    )


def _read_head(sock: socket.socket, proxy: ProxyURL, deadline: Deadline) -> bytes:
    """The proxy's answer up to the blank line, and not one byte of the tunnel after it."""
    head = b""
    while True:
        sock.settimeout(deadline.timeout())
        peeked = sock.recv(_CHUNK, socket.MSG_PEEK)
        if not peeked:
            raise ProxyError(proxy.display, "the proxy closed the connection without answering")
        window = head[-3:] + peeked
        end = window.find(b"\r\n\r\n")
        if end >= 0:
            take = end + 4 - len(head[-3:])
            return head + _recv_exact(sock, take, deadline, proxy)
        head += _recv_exact(sock, len(peeked), deadline, proxy)
        if len(head) > MAX_PROXY_HEAD_BYTES:
            raise ProxyError(
                proxy.display, f"the proxy's answer is over {MAX_PROXY_HEAD_BYTES} bytes"
            )


def _socks5_connect(
    sock: socket.socket,
    proxy: ProxyURL,
    host: str,
    port: int,
    deadline: Deadline,
    address: str | None,
) -> None:
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    _send(sock, b"\x05" + bytes([len(methods)]) + methods, deadline)
    version, method = _recv_exact(sock, 2, deadline, proxy)
    if version != 5:
        raise ProxyError(proxy.display, f"not a SOCKS5 proxy (version byte {version})")
    if method == 0xFF:
        wants = "" if proxy.username is not None else "; it may want a username and password"
        raise ProxyAuthError(
            proxy.display, f"the SOCKS5 proxy accepts none of our authentication methods{wants}"
        )
    if method == 0x02 and proxy.username is not None:
        user = proxy.username.encode("utf-8")
        secret = (proxy.password or "").encode("utf-8")
        _send(sock, b"\x01" + bytes([len(user)]) + user + bytes([len(secret)]) + secret, deadline)
        _, status = _recv_exact(sock, 2, deadline, proxy)
        if status != 0:
            raise ProxyAuthError(
                proxy.display,
                f"the SOCKS5 proxy refused the username and password (RFC 1929 status {status})",
            )
    elif method != 0x00:
        raise ProxyError(
            proxy.display, f"the SOCKS5 proxy chose a method we did not offer ({method})"
        )
    _send(
        sock,
        b"\x05\x01\x00" + _socks_address(address or host, proxy) + port.to_bytes(2, "big"),
        deadline,
    )
    version, reply, _reserved, kind = _recv_exact(sock, 4, deadline, proxy)
    if version != 5:
        raise ProxyError(proxy.display, f"not a SOCKS5 reply (version byte {version})")
    if reply != 0:
        why = _SOCKS_REPLIES.get(reply, "unknown error")
        raise ProxyError(
            proxy.display,
            f"the SOCKS5 proxy could not connect to {host_port(host, port)}: {why} (reply {reply})",
        )
    if kind == 1:
        _recv_exact(sock, 4 + 2, deadline, proxy)
    elif kind == 4:
        _recv_exact(sock, 16 + 2, deadline, proxy)
    elif kind == 3:
        (length,) = _recv_exact(sock, 1, deadline, proxy)
        _recv_exact(sock, length + 2, deadline, proxy)
    else:
        raise ProxyError(proxy.display, f"the SOCKS5 reply has an unknown address type {kind}")


def _socks_address(target: str, proxy: ProxyURL) -> bytes:
    try:
        ip = ipaddress.ip_address(target)
    except ValueError:
        name = target.encode("idna")
        if len(name) > 255:
            raise ProxyError(proxy.display, "the target's host name is over 255 bytes") from None
        return b"\x03" + bytes([len(name)]) + name
    return (b"\x01" if ip.version == 4 else b"\x04") + ip.packed
