"""The ``proxy`` option, read and checked (pure): which proxy a URL goes through, and how
requests should be told. The tunnels themselves are :mod:`wsmanager.net.tunnel`.

Reaching the exchange through an HTTP CONNECT or SOCKS5 proxy (stdlib only).

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

import urllib.request
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

from ._redact import redact_url
from .errors import ConnectionFailedError

__all__ = [
    "PROXY_SCHEMES",
    "ProxyAuthError",
    "ProxyError",
    "ProxyURL",
    "check_proxy_option",
    "host_port",
    "parse_proxy",
    "proxy_for",
    "requests_proxies",
]

PROXY_SCHEMES = ("http", "socks5", "socks5h")
_DEFAULT_PORTS = {"http": 80, "socks5": 1080, "socks5h": 1080}


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
        return f"{self.scheme}://{auth}{host_port(self.host, self.port)}"

    @property
    def url(self) -> str:
        """The full URL, credentials included (for ``requests``' ``proxies=``; never log it)."""
        auth = ""
        if self.username is not None:
            auth = quote(self.username, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        return f"{self.scheme}://{auth}{host_port(self.host, self.port)}"


def host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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
                f"got {redact_url(text)!r}"
            )
        text = f"{default_scheme}://{text}"
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    shown = redact_url(text)
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
