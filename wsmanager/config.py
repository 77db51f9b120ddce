"""Validated, frozen configuration: the one place where every default is defined."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import sys
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from ._redact import API_KEY, SECRET_URL, redact_key, redact_url, redacted_repr
from .errors import InvalidStreamNameError
from .proxy import check_proxy_option

__all__ = [
    "BINANCE_WS_URL",
    "DEFAULT_ARCHIVE_URL",
    "DEFAULT_REST_URL",
    "DEFAULT_SEQUENCE_RESET_THRESHOLD",
    "ENCODINGS",
    "MAX_BACKPRESSURE",
    "MAX_STREAM_NAME_LENGTH",
    "TIME_UNITS",
    "WSManagerConfig",
    "default_cache_dir",
    "is_loopback_url",
    "redact_key",
    "redact_url",
    "stream_url",
    "validate_stream_name",
]

MAX_STREAM_NAME_LENGTH = 200
DEFAULT_BACKPRESSURE = 5.0
MAX_BACKPRESSURE = 30.0  # seconds; the exchange closes a connection whose pong is 60 s late
DEFAULT_REST_URL = "https://api.binance.com"
DEFAULT_ARCHIVE_URL = "https://data.binance.vision"  # Binance's public data archive
BINANCE_WS_URL = "wss://stream.binance.com:9443/ws/"  # spot market data
ENCODINGS = ("json", "sbe")  # market data as JSON text frames, or SBE binary frames

# Binance stream names use letters, digits and a few punctuation marks
# (btcusdt@kline_1m, !ticker@arr, btcusdt@depth@100ms), letters of any script included (symbols
# such as 币安人生usdt are listed since 2025-12; they are percent-encoded in URLs). Anything else is
# refused, so a name can never inject into the HTTP request line or change the URL's path, query
# or fragment.
_STREAM_NAME_ALLOWED = re.compile(r"[A-Za-z0-9@_.!~:+=,*-]+")
_PUNCTUATION_ALLOWED = frozenset("@_.!~:+=,*-")
_FORBIDDEN_EXPLAINED = {"/": "a slash", "?": "a '?'", "#": "a '#'", "%": "a '%'"}
TIME_UNITS = ("millisecond", "microsecond")
DEFAULT_SEQUENCE_RESET_THRESHOLD = 1_000_000


def _name_char_allowed(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char in _PUNCTUATION_ALLOWED
    return char.isalpha()


def validate_stream_name(stream: object) -> str:
    """Return ``stream`` if it is a usable stream name, else raise ``InvalidStreamNameError``."""
    if not isinstance(stream, str):
        raise InvalidStreamNameError(stream, f"must be a str, not {type(stream).__name__}")
    if not stream:
        raise InvalidStreamNameError(stream, "it is empty")
    if len(stream) > MAX_STREAM_NAME_LENGTH:
        raise InvalidStreamNameError(
            stream, f"it is {len(stream)} characters long (at most {MAX_STREAM_NAME_LENGTH})"
        )
    if _STREAM_NAME_ALLOWED.fullmatch(stream):
        return stream
    for char in stream:
        if _name_char_allowed(char):
            continue
        if char.isspace():
            reason = "it contains whitespace"
        elif not char.isprintable():
            reason = f"it contains the control character {char!r}"
        else:
            reason = f"it contains {_FORBIDDEN_EXPLAINED.get(char, repr(char))}"
        raise InvalidStreamNameError(
            stream, reason + " (allowed: letters of any script, digits and @ _ . ! ~ : + = , * -)"
        )
    return stream


def default_cache_dir() -> str:
    """The user cache directory of wsmanager: ``$XDG_CACHE_HOME/wsmanager`` (default
    ``~/.cache/wsmanager``), ``~/Library/Caches/wsmanager`` on macOS,
    ``%LOCALAPPDATA%\\wsmanager\\Cache`` on Windows."""
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
        return os.path.join(base, "wsmanager", "Cache")
    if sys.platform == "darwin":
        return os.path.expanduser("~/Library/Caches/wsmanager")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "wsmanager")


def stream_url(base_url: str, stream: str) -> str:
    """Join the manager's base URL and a stream name with exactly one slash; the base URL's
    query (``?timeUnit=MICROSECOND``) stays at the end, a non-ASCII name is percent-encoded."""
    base, question, query = base_url.partition("?")
    name = stream if stream.isascii() else quote(stream, safe="@!~:+=,*-._")
    return base.rstrip("/") + "/" + name + question + query


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_positive(name: str, value: float | None, *, allow_none: bool = False) -> None:
    if value is None:
        if allow_none:
            return
        raise ValueError(f"{name} must be a positive number, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of seconds, got {value!r}")


def _check_int(name: str, value: object, *, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, got {value}")


def _check_url(url: object) -> None:
    if not isinstance(url, str):
        raise ValueError(f"url must be a str, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"url must start with ws:// or wss://, got {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"url has no host: {redact_url(url)!r}")
    if parts.fragment:
        raise ValueError(f"url must not have a fragment: {redact_url(url)!r}")
    if "streams=" in parts.query.lower():
        raise ValueError(
            f"url must not name streams in its query (subscribe them instead): {redact_url(url)!r}"
        )
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ValueError(f"url has an invalid port: {redact_url(url)!r}") from exc


@dataclass(frozen=True)
class WSManagerConfig:
    """Every option of a :class:`~wsmanager.WSManager`, with its default. Times are seconds.

    A field that can hold a secret carries it in its metadata (``SECRET_URL``: credentials and
    query redacted; ``SECRET``, ``API_KEY``): ``repr`` never shows more than that."""

    url: str = field(metadata=SECRET_URL)
    # Reconnect policy
    max_retry_attempts: int | None = 10
    base_retry_delay: float = 1.0
    max_retry_delay: float = 30.0
    jitter_range: float = 0.5
    # Logging
    debug: bool = False
    # Idle cleanup
    idle_timeout: float | None = 300.0
    cleanup_interval: float = 60.0
    # Liveness
    ping_interval: float = 20.0
    ping_timeout: float = 10.0
    handshake_timeout: float = 10.0
    close_timeout: float = 1.0
    # The exchange's rules (version 2)
    streams_per_connection: int = 200
    max_connection_age: float | None = 23 * 3600.0
    connection_budget: tuple[int, float] | None = (300, 300.0)
    max_client_messages_per_second: float = 4.0
    stale_after: float | None = None
    # Limits
    max_buffered_messages: int = 10_000
    max_buffered_bytes: int = 64 * 1024 * 1024
    max_message_size: int = 16 * 1024 * 1024
    # Seconds a reader waits for a full buffer before dropping; None: 5.0, or half of
    # ping_interval + ping_timeout when that is shorter (see backpressure)
    max_backpressure: float | None = None
    # Decoding: typed messages (msgspec Structs) instead of dicts for the documented payloads
    typed: bool = False
    # TLS
    verify_tls: bool = True
    # REST (order books, backfill, history)
    rest_url: str | None = field(default=None, metadata=SECRET_URL)
    # Payloads (v3): "microsecond" adds timeUnit=MICROSECOND to every URL; None: the URL's own
    time_unit: str | None = None
    # A number this far behind the last one delivered is the exchange restarting its ids
    sequence_reset_threshold: int = DEFAULT_SEQUENCE_RESET_THRESHOLD
    # History (subscribe(..., since=...), history()): the public archive (None: REST only) and
    # the cache of its files (None: no cache)
    archive_url: str | None = field(default=DEFAULT_ARCHIVE_URL, metadata=SECRET_URL)
    cache_dir: str | os.PathLike[str] | None = field(default_factory=default_cache_dir)
    # Network: None (direct), "env" or a proxy URL
    proxy: str | None = field(default=None, metadata=SECRET_URL)
    # SBE market data: the frames' encoding, and the API key sent in X-MBX-APIKEY (required by
    # encoding="sbe"; never shown beyond its first 4 characters)
    encoding: str = "json"
    api_key: str | None = field(default=None, metadata=API_KEY)

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        _check_url(self.url)
        if self.max_retry_attempts is not None:
            if isinstance(self.max_retry_attempts, bool) or not isinstance(
                self.max_retry_attempts, int
            ):
                raise ValueError(
                    f"max_retry_attempts must be an int or None, got {self.max_retry_attempts!r}"
                )
            if self.max_retry_attempts < 1:
                raise ValueError(
                    f"max_retry_attempts must be >= 1 (or None), got {self.max_retry_attempts}"
                )
        _check_positive("base_retry_delay", self.base_retry_delay)
        _check_positive("max_retry_delay", self.max_retry_delay)
        if self.max_retry_delay < self.base_retry_delay:
            raise ValueError(
                f"max_retry_delay ({self.max_retry_delay}) must not be less than "
                f"base_retry_delay ({self.base_retry_delay})"
            )
        if isinstance(self.jitter_range, bool) or not isinstance(self.jitter_range, (int, float)):
            raise ValueError(f"jitter_range must be a number, got {self.jitter_range!r}")
        if not 0 <= self.jitter_range <= 1:
            raise ValueError(f"jitter_range must be between 0 and 1, got {self.jitter_range}")
        _check_positive("idle_timeout", self.idle_timeout, allow_none=True)
        _check_positive("cleanup_interval", self.cleanup_interval)
        _check_positive("ping_interval", self.ping_interval)
        _check_positive("ping_timeout", self.ping_timeout)
        if self.ping_timeout >= self.ping_interval:
            raise ValueError(
                f"ping_timeout ({self.ping_timeout}) must be less than "
                f"ping_interval ({self.ping_interval})"
            )
        _check_positive("handshake_timeout", self.handshake_timeout)
        _check_positive("close_timeout", self.close_timeout)
        self._check_exchange_rules()
        self._check_limits()

    def _check_exchange_rules(self) -> None:
        _check_int("streams_per_connection", self.streams_per_connection, maximum=1024)
        _check_positive("max_connection_age", self.max_connection_age, allow_none=True)
        budget = self.connection_budget
        if budget is not None:
            if not isinstance(budget, tuple) or len(budget) != 2:
                raise ValueError(
                    f"connection_budget must be (attempts, seconds) or None, got {budget!r}"
                )
            _check_int("connection_budget[0] (attempts)", budget[0])
            _check_positive("connection_budget[1] (seconds)", budget[1])
        rate = self.max_client_messages_per_second
        _check_positive("max_client_messages_per_second", rate)
        if rate < 1:
            raise ValueError(
                f"max_client_messages_per_second must be at least 1 (a ping must fit), got {rate}"
            )
        _check_positive("stale_after", self.stale_after, allow_none=True)

    def _check_limits(self) -> None:
        _check_int("max_buffered_messages", self.max_buffered_messages)
        _check_int("max_message_size", self.max_message_size)
        _check_int("max_buffered_bytes", self.max_buffered_bytes)
        self._check_backpressure()
        if self.max_buffered_bytes < self.max_message_size:
            raise ValueError(
                f"max_buffered_bytes ({self.max_buffered_bytes}) must be at least "
                f"max_message_size ({self.max_message_size})"
            )
        if not isinstance(self.typed, bool):
            raise ValueError(f"typed must be True or False, got {self.typed!r}")
        if not isinstance(self.verify_tls, bool):
            raise ValueError(f"verify_tls must be True or False, got {self.verify_tls!r}")
        if self.rest_url is not None:
            parts = urlsplit(self.rest_url) if isinstance(self.rest_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                shown = redact_url(self.rest_url)
                raise ValueError(f"rest_url must be an http:// or https:// URL, got {shown!r}")
        check_proxy_option(self.proxy)
        if self.time_unit is not None and (
            not isinstance(self.time_unit, str) or self.time_unit.lower() not in TIME_UNITS
        ):
            raise ValueError(
                f"time_unit must be None, 'millisecond' or 'microsecond', got {self.time_unit!r}"
            )
        _check_int("sequence_reset_threshold", self.sequence_reset_threshold)
        if self.archive_url is not None:
            parts = urlsplit(self.archive_url) if isinstance(self.archive_url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(
                    f"archive_url must be an http:// or https:// URL or None, "
                    f"got {redact_url(self.archive_url)!r}"
                )
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise ValueError(
                f"cache_dir must be a path (str or os.PathLike) or None, got {self.cache_dir!r}"
            )
        self._check_encoding()

    def _check_encoding(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be 'json' or 'sbe', got {self.encoding!r}")
        key = self.api_key
        if key is not None:
            if not isinstance(key, str):
                raise ValueError(f"api_key must be a str or None, not {type(key).__name__}")
            if not key or not all(" " < char < "\x7f" for char in key):
                raise ValueError(
                    f"api_key {redact_key(key)!r} must be non-empty printable ASCII without spaces "
                    "(it goes in an HTTP header)"
                )
        if self.encoding == "sbe" and key is None:
            raise ValueError(
                "encoding='sbe' (endpoint 'spot-sbe') needs api_key=...: the exchange requires "
                "an API key (Ed25519) in the X-MBX-APIKEY header of every connection"
            )

    @property
    def handshake_headers(self) -> dict[str, str]:
        """Headers sent with every opening handshake: the API key, when there is one."""
        return {} if self.api_key is None else {"X-MBX-APIKEY": self.api_key}

    @property
    def backpressure(self) -> float:
        """Seconds a reader waits for a full stream buffer before dropping the oldest."""
        if self.max_backpressure is not None:
            return float(self.max_backpressure)
        return min(DEFAULT_BACKPRESSURE, (self.ping_interval + self.ping_timeout) / 2)

    def _check_backpressure(self) -> None:
        wait = self.max_backpressure
        if wait is None:
            return
        if isinstance(wait, bool) or not isinstance(wait, (int, float)):
            raise ValueError(f"max_backpressure must be a number of seconds, got {wait!r}")
        if not math.isfinite(wait) or wait < 0:
            raise ValueError(
                f"max_backpressure must be 0 (drop at once) or a positive number of seconds, "
                f"got {wait!r}"
            )
        liveness = self.ping_interval + self.ping_timeout
        if wait >= liveness or wait > MAX_BACKPRESSURE:
            raise ValueError(
                f"max_backpressure ({wait:g}s) must be less than ping_interval + ping_timeout "
                f"({liveness:g}s) and at most {MAX_BACKPRESSURE:g}s (half the exchange's pong "
                "deadline of 60s): a reader waiting longer could not keep the connection alive"
            )

    @property
    def effective_rest_url(self) -> str:
        """The REST base for order books and backfill: ``rest_url``, else Binance spot's."""
        return self.rest_url or DEFAULT_REST_URL

    def stream_url(self, stream: str) -> str:
        """The URL of ``stream`` under this configuration's base URL."""
        return stream_url(self.url, stream)
