"""Where a connection goes: the URL for the streams it carries (pure).

With ``streams_per_connection=1`` (or a base URL whose path does not end in ``/ws``) every stream
has its own raw connection, ``<url>/<stream>``, whose frames are the payloads. Otherwise a
connection opens ``<scheme>://<host>[<prefix>]/stream?streams=a/b/c`` (Binance's combined streams,
each frame an envelope ``{"stream": ..., "data": ...}``), names as many of its streams in the URL
as keep the request line under 8 KiB, and subscribes the rest with ``SUBSCRIBE``.

The base URL's query (``?timeUnit=MICROSECOND``) is kept on every URL, raw and combined; stream
names are percent-encoded (UTF-8) in URLs, so ``币安人生usdt@trade`` travels safely. A
:class:`Router` gives each stream its :class:`Target`: one for most endpoints, one per route for
the routed USD-M preset (``<root>/public/...``, ``<root>/market/...``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from ..config import WSManagerConfig

__all__ = ["MAX_REQUEST_LINE", "Router", "Target", "quote_stream", "target_for"]

MAX_REQUEST_LINE = 8000  # bytes of "GET <path> HTTP/1.1\r\n": under the exchange's 8 KiB
_REQUEST_LINE_OVERHEAD = len("GET  HTTP/1.1\r\n")
_NAME_SAFE = "@!~:+=,*-._"  # the ASCII punctuation a stream name may hold: sent as is


def quote_stream(name: str) -> str:
    """``name`` as it goes in a URL: ASCII names unchanged, others percent-encoded (UTF-8)."""
    return name if name.isascii() else quote(name, safe=_NAME_SAFE)


@dataclass(frozen=True)
class Target:
    """How to reach the exchange for one group of streams (``base_url`` without its query)."""

    base_url: str
    combined: bool
    query: str = ""  # kept on every URL (e.g. "timeUnit=MICROSECOND")
    route: str | None = None  # the USD-M route ("public", "market"), when routed

    def url(self, streams: Sequence[str], *, names_in_url: bool = True) -> tuple[str, list[str]]:
        """The URL to open, and the streams it names (the others need ``SUBSCRIBE``)."""
        parts = urlsplit(self.base_url)
        if not self.combined:
            if len(streams) != 1:
                raise ValueError(f"a raw connection carries exactly one stream, not {streams}")
            path = parts.path.rstrip("/") + "/" + quote_stream(streams[0])
            url = urlunsplit((parts.scheme, parts.netloc, path, self.query, ""))
            return url, list(streams)
        path = parts.path.rstrip("/")
        prefix = path[: -len("/ws")] + "/stream"
        chosen: list[str] = []
        extra = "&" + self.query if self.query else ""
        if names_in_url:
            budget = MAX_REQUEST_LINE - _REQUEST_LINE_OVERHEAD - len(prefix) - len("?streams=")
            budget -= len(extra)
            for name in streams:
                cost = len(quote_stream(name)) + (1 if chosen else 0)
                if cost > budget:
                    break
                chosen.append(name)
                budget -= cost
        query = "streams=" + "/".join(map(quote_stream, chosen)) + extra if chosen else self.query
        return urlunsplit((parts.scheme, parts.netloc, prefix, query, "")), chosen


def _query(config: WSManagerConfig) -> str:
    query = urlsplit(config.url).query
    unit = config.time_unit
    if unit is not None and "timeunit=" not in query.lower():
        query = (query + "&" if query else "") + "timeUnit=" + unit.upper()
    return query


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def target_for(config: WSManagerConfig) -> Target:
    """Combined connections when the URL's path ends in ``/ws`` and more than one stream may
    share a connection; raw per-stream connections otherwise."""
    path = urlsplit(config.url).path.rstrip("/")
    combined = config.streams_per_connection > 1 and (path == "/ws" or path.endswith("/ws"))
    return Target(_without_query(config.url), combined, _query(config))


def _root(url: str) -> str:
    """The routed root of ``url``: its path without a trailing ``/ws`` or ``/stream``."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    for tail in ("/ws", "/stream"):
        if path.endswith(tail):
            path = path[: -len(tail)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class Router:
    """Which :class:`Target` carries each stream, and which streams the endpoint refuses.

    ``routes`` empty: one target for every stream. Several routes (the routed ``usdm`` preset):
    ``<root>/<route>/ws`` per route, the stream's route given by ``route_of``. ``refusal`` says
    why a stream cannot be carried (None: it can), checked at ``subscribe()``.
    """

    def __init__(
        self,
        config: WSManagerConfig,
        routes: Sequence[str] = (),
        route_of: Callable[[str], str | None] = lambda stream: None,
        refusal: Callable[[str], str | None] = lambda stream: None,
    ) -> None:
        self._default = target_for(config)
        self._route_of = route_of
        self._refusal = refusal
        self._targets: Mapping[str, Target] = {}
        if len(routes) > 1:
            root = _root(config.url)
            combined = config.streams_per_connection > 1
            query = _query(config)
            self._targets = {
                route: Target(f"{root}/{route}/ws", combined, query, route) for route in routes
            }

    @property
    def combined(self) -> bool:
        return self._default.combined if not self._targets else self.routed_combined

    @property
    def routed_combined(self) -> bool:
        return all(t.combined for t in self._targets.values())

    @property
    def routed(self) -> bool:
        return bool(self._targets)

    def targets(self) -> list[Target]:
        return list(self._targets.values()) or [self._default]

    def refusal(self, stream: str) -> str | None:
        return self._refusal(stream)

    def target(self, stream: str) -> Target:
        """The target of ``stream`` (its route's, when routed)."""
        if not self._targets:
            return self._default
        route = self._route_of(stream)
        if route is None or route not in self._targets:
            raise ValueError(f"no route for stream {stream!r}")
        return self._targets[route]
