"""Exceptions raised or reported by wsmanager.

The tree::

    WSManagerError
    ├── ConnectionFailedError      (.code, .reason: why one connection attempt ended)
    │   ├── HandshakeFailedError   (.status_code, .headers: the opening handshake failed)
    │   ├── ProxyError             (.proxy redacted, .status_code: wsmanager.proxy)
    │   │   └── ProxyAuthError
    │   └── ConnectionLostError    (an open connection ended; .code is the close code or None)
    ├── RetriesExhaustedError      (.stream, .attempts, .last_error: a ConnectionFailedError)
    ├── HandshakeRejectedError     (.stream, .status_code, .headers)
    ├── ManagerClosedError
    ├── StreamRejectedError        (.stream, .code, .reason: the exchange refused a SUBSCRIBE)
    └── InvalidStreamNameError     (also a ValueError; .stream)

``RetriesExhaustedError``, ``HandshakeRejectedError`` and ``StreamRejectedError`` are not raised
to the caller: they are handed to each subscriber's ``on_error`` when a stream ends for good.
``ConnectionFailedError`` and its subclasses describe one failed attempt: they are what
``RetriesExhaustedError.last_error`` holds (websocket-client's own exceptions never leave
:mod:`wsmanager.net.connection`; the original is kept as ``__cause__``).
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "ConnectionFailedError",
    "ConnectionLostError",
    "HandshakeFailedError",
    "HandshakeRejectedError",
    "InvalidStreamNameError",
    "ManagerClosedError",
    "RetriesExhaustedError",
    "StreamRejectedError",
    "WSManagerError",
]


class WSManagerError(Exception):
    """Base class of every wsmanager error."""


class ConnectionFailedError(WSManagerError):
    """One connection attempt failed, or one open connection ended (retried)."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        super().__init__(reason if code is None else f"{reason} (close code {code})")
        self.reason = reason
        self.code = code


class HandshakeFailedError(ConnectionFailedError):
    """The server did not upgrade the connection: an HTTP status other than 101, a response too
    large or too slow, or an invalid upgrade. ``status_code`` is None when there was no status."""

    def __init__(
        self, status_code: int | None, reason: str, headers: Mapping[str, str] | None = None
    ) -> None:
        text = reason if status_code is None else f"HTTP {status_code}: {reason}"
        super().__init__(f"handshake failed: {text}")
        self.status_code = status_code
        self.headers: dict[str, str] = {k.lower(): v for k, v in (headers or {}).items()}


class ConnectionLostError(ConnectionFailedError):
    """An open connection ended: a close frame (``code``, ``reason``), a dropped TCP connection,
    or a dead link (no pong in time); ``code`` is None without a close frame."""


class RetriesExhaustedError(WSManagerError):
    """A stream failed ``attempts`` connection attempts in a row and was given up."""

    def __init__(self, stream: str, attempts: int, last_error: BaseException | None) -> None:
        super().__init__(
            f"stream {stream!r}: gave up after {attempts} failed connection attempt(s); "
            f"last error: {last_error!r}"
        )
        self.stream = stream
        self.attempts = attempts
        self.last_error = last_error


class HandshakeRejectedError(WSManagerError):
    """The server answered the opening handshake with a permanent HTTP error (4xx)."""

    def __init__(
        self, stream: str, status_code: int, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"stream {stream!r}: handshake rejected with HTTP {status_code}")
        self.stream = stream
        self.status_code = status_code
        self.headers: dict[str, str] = dict(headers or {})


class ManagerClosedError(WSManagerError):
    """The manager was destroyed; it accepts no new subscriptions."""


class StreamRejectedError(WSManagerError):
    """The exchange refused to carry a stream (a ``SUBSCRIBE`` answered with an error, twice)."""

    def __init__(self, stream: str, code: int | None, reason: str) -> None:
        super().__init__(f"stream {stream!r}: refused by the exchange (code {code}): {reason}")
        self.stream = stream
        self.code = code
        self.reason = reason


class InvalidStreamNameError(WSManagerError, ValueError):
    """A stream name that cannot be part of a WebSocket URL path."""

    def __init__(self, stream: object, reason: str) -> None:
        super().__init__(f"invalid stream name {stream!r}: {reason}")
        self.stream = stream
