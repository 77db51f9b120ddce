"""Reaching the exchange through an HTTP CONNECT or SOCKS5 proxy (stdlib only).

The ``proxy`` option is ``None`` (no proxy, the default), ``"env"`` (the ``https_proxy`` /
``http_proxy`` / ``all_proxy`` environment variables, honouring ``no_proxy``) or a URL:
``http://[user:pass@]host[:port]`` (HTTP ``CONNECT``, Basic auth), ``socks5://`` (the target's
name is resolved here) or ``socks5h://`` (the proxy resolves it), each with an optional username
and password (RFC 1929 for SOCKS5).

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
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

from .errors import ConnectionFailedError

if TYPE_CHECKING:
    from .deadline import Deadline

__all__ = [
    "MAX_PROXY_HEAD_BYTES",
    "PROXY_SCHEMES",
    "ProxyAuthError",
    "ProxyError",
    "ProxyURL",
    "check_proxy_option",
    "connect_through",
    "parse_proxy",
    "proxy_for",
    "requests_proxies",
]

PROXY_SCHEMES = ("http", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080}
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


class ProxyError(ConnectionFailedError):
    """The proxy could not be reached or did not open the tunnel (retried like any failed
    attempt). ``proxy`` is the redacted proxy URL; ``status_code`` the HTTP status the proxy
    answered ``CONNECT`` with (None for SOCKS5 and for failures before an answer)."""

    def __init__(self, proxy: str, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(f"proxy {proxy}: {reason}")
        self.proxy = proxy
        self.status_code = status_code


class ProxyAuthError(ProxyError):
    """The proxy refused the credentials, or wants some and has none (HTTP 407, a SOCKS5
    authentication failure). Retried too: see docs/proxies.md."""


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL. ``username``/``password`` are kept out of ``repr``."""

    scheme: str
    host: str
    port: int
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def display(self) -> str:
        """The URL with the credentials replaced by ``***``: for logs and messages."""
        auth = "***@" if self.username is not None else ""
        return f"{self.scheme}://{auth}{_authority(self.host, self.port)}"

    @property
    def url(self) -> str:
        """The full URL, credentials included (for ``requests``' ``proxies=``; never log it)."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{self.scheme}://{auth}{_authority(self.host, self.port)}"


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _redact(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "", value
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    return f"{scheme}{sep}{netloc}{slash}{tail}"


def parse_proxy(
    value: object, *, option: str = "proxy", default_scheme: str | None = None
) -> ProxyURL:
    """Parse a proxy URL, or raise ``ValueError`` naming ``option`` (the credentials redacted).

    ``default_scheme`` is used when ``value`` has no ``scheme://`` (environment variables are
    often written ``host:port``).
    """
    if not isinstance(value, str):
        raise ValueError(
            f"{option} must be a str (a proxy URL or 'env'), not {type(value).__name__}"
        )
    text = value.strip()
    if "://" not in text:
        if default_scheme is None:
            raise ValueError(
                f"{option} must be a URL such as http://host:port or socks5://host:port, "
                f"got {_redact(text)!r}"
            )
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    shown = _redact(text)
    if scheme not in PROXY_SCHEMES:
        hint = " (a TLS connection to the proxy is not supported)" if scheme == "https" else ""
        raise ValueError(
            f"{option}: unsupported proxy scheme {scheme + '://'!r} in {shown!r}{hint}; "
            f"use one of {', '.join(s + '://' for s in PROXY_SCHEMES)}"
        )
    if not parts.hostname:
        raise ValueError(f"{option} has no host: {shown!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{option} must not have a path, query or fragment: {shown!r}")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError(f"{option} has an invalid port: {shown!r}") from None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is None and password:
        raise ValueError(f"{option} has a password but no username: {shown!r}")
    if scheme != "http" and username is not None:
        # RFC 1929: a username and a password of 1 to 255 bytes each.
        for what, item in (("username", username), ("password", password)):
            if not item or len(item.encode("utf-8")) > 255:
                raise ValueError(
                    f"{option}: a SOCKS5 {what} must be 1 to 255 bytes (RFC 1929): {shown!r}"
                )
    return ProxyURL(scheme, parts.hostname, port, username, password)


def _environment_proxy(target_url: str) -> ProxyURL | None:
    """The proxy the environment names for ``target_url`` (None: none, or ``no_proxy``)."""
    parts = urlsplit(target_url)
    proxies = urllib.request.getproxies_environment()
    key = "https" if parts.scheme in ("wss", "https") else "http"
    value = proxies.get(key) or proxies.get("all")
    if not value:
        return None
    host = parts.hostname or ""
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]
        return None
    option = (
        f"the {key}_proxy environment variable"
        if proxies.get(key)
        else ("the all_proxy environment variable")
    )
    return parse_proxy(value, option=option, default_scheme="http")


def check_proxy_option(value: object) -> None:
    """Validate the ``proxy`` option (and, for ``"env"``, the variables set now)."""
    if value is None:
        return
    if value == "env":
        try:
            for target in ("wss://example.invalid/", "ws://example.invalid/"):
                _environment_proxy(target)
        except ValueError as exc:
            raise ValueError(f"proxy='env': {exc}") from None
        return
    parse_proxy(value)


def proxy_for(option: str | None, target_url: str) -> ProxyURL | None:
    """The proxy to use for ``target_url`` under the ``proxy`` option (None: go direct)."""
    if option is None:
        return None
    if option == "env":
        return _environment_proxy(target_url)
    return parse_proxy(option)


def requests_proxies(option: str | None) -> dict[str, str | None]:
    """The ``proxies=`` argument for ``requests`` matching the ``proxy`` option.

    ``None`` maps every scheme to ``None`` so that requests does not pick a proxy from the
    environment either (the same "no proxy" as the WebSocket connections); ``"env"`` gives
    ``{}``, leaving requests to its own environment handling; a URL is used for http and https.
    SOCKS5 needs PySocks: ``pip install 'wsmanager[socks]'``.
    """
    if option is None:
        return {"http": None, "https": None, "all": None}
    if option == "env":
        return {}
    url = parse_proxy(option).url
    return {"http": url, "https": url}


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
    authority = _authority(host if host.isascii() else host.encode("idna").decode("ascii"), port)
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
            f"the SOCKS5 proxy could not connect to {_authority(host, port)}: {why} "
            f"(reply {reply})",
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
