"""Where a connection goes: the URL for the streams it carries (pure).

With ``streams_per_connection=1`` (or a base URL whose path does not end in ``/ws``) every stream
has its own raw connection, ``<url>/<stream>``, whose frames are the payloads. Otherwise a
connection opens ``<scheme>://<host>[<prefix>]/stream?streams=a/b/c`` (Binance's combined streams,
each frame an envelope ``{"stream": ..., "data": ...}``), names as many of its streams in the URL
as keep the request line under 8 KiB, and subscribes the rest with ``SUBSCRIBE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from ..config import WSManagerConfig, stream_url

__all__ = ["MAX_REQUEST_LINE", "Target", "target_for"]

MAX_REQUEST_LINE = 8000  # bytes of "GET <path> HTTP/1.1\r\n": under the exchange's 8 KiB
_REQUEST_LINE_OVERHEAD = len("GET  HTTP/1.1\r\n")


@dataclass(frozen=True)
class Target:
    """How to reach the exchange for one group of streams."""

    base_url: str
    combined: bool

    def url(self, streams: Sequence[str], *, names_in_url: bool = True) -> tuple[str, list[str]]:
        """The URL to open, and the streams it names (the others need ``SUBSCRIBE``)."""
        if not self.combined:
            if len(streams) != 1:
                raise ValueError(f"a raw connection carries exactly one stream, not {streams}")
            return stream_url(self.base_url, streams[0]), list(streams)
        parts = urlsplit(self.base_url)
        path = parts.path.rstrip("/")
        prefix = path[: -len("/ws")] + "/stream"
        chosen: list[str] = []
        if names_in_url:
            budget = MAX_REQUEST_LINE - _REQUEST_LINE_OVERHEAD - len(prefix) - len("?streams=")
            for name in streams:
                cost = len(name) + (1 if chosen else 0)
                if cost > budget:
                    break
                chosen.append(name)
                budget -= cost
        query = "streams=" + "/".join(chosen) if chosen else ""
        return urlunsplit((parts.scheme, parts.netloc, prefix, query, "")), chosen


def target_for(config: WSManagerConfig) -> Target:
    """Combined connections when the URL's path ends in ``/ws`` and more than one stream may
    share a connection; raw per-stream connections otherwise."""
    path = urlsplit(config.url).path.rstrip("/")
    combined = config.streams_per_connection > 1 and (path == "/ws" or path.endswith("/ws"))
    return Target(config.url, combined)
