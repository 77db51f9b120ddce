"""The error boundary: how a connection attempt ended, in wsmanager's own exceptions.

websocket-client reports the end of a connection in ways that differ between its versions (1.8:
``on_close`` with the code; 1.9.0: the close frame object itself to ``on_error``; 1.9.2: an
exception with ``status_code``), and raises its own exception classes. :func:`final_error` turns
what one attempt saw into one :class:`~wsmanager.errors.ConnectionFailedError` (close code and
reason kept, the original as ``__cause__``); :func:`is_permanent_status` and
:func:`retry_after` (the one strict parser of :mod:`wsmanager.backoff`) say what a failed
handshake means for the next attempt.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import websocket

from ..backoff import MAX_RETRY_AFTER, parse_retry_after
from ..errors import ConnectionFailedError, ConnectionLostError, HandshakeFailedError
from . import _wsclient

__all__ = [
    "MAX_RETRY_AFTER",
    "Attempt",
    "convert",
    "final_error",
    "is_permanent_status",
    "parse_retry_after",
    "retry_after",
]


_RETRYABLE_4XX = frozenset({408, 418, 429})


def is_permanent_status(status: int) -> bool:
    """A handshake answered with this HTTP status will not succeed by retrying."""
    return 400 <= status < 500 and status not in _RETRYABLE_4XX


@dataclass
class Attempt:
    """What one run of ``run_forever`` saw: when it opened, and how it ended."""

    opened_at: float | None = None  # monotonic
    error: BaseException | None = None
    close_code: int | None = None
    close_reason: str = ""
    loop: Any = None  # the ReadLoop of this socket


def retry_after(error: ConnectionFailedError) -> float | None:
    if isinstance(error, HandshakeFailedError):
        return parse_retry_after(error.headers.get("retry-after"))
    return None


def _close_args(error: Any) -> tuple[int | None, str]:
    """The close code and reason inside websocket-client's own report of a close frame."""
    if isinstance(error, websocket.ABNF):  # 1.9.0 hands the close frame itself to on_error
        data = error.data or b""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(data) >= 2:
            return int.from_bytes(data[:2], "big"), data[2:].decode("utf-8", "replace")
        return None, ""
    code = getattr(error, "status_code", None)  # 1.9.2 converts it into an exception
    reason = getattr(error, "reason", None)
    return (code if isinstance(code, int) else None), (reason if isinstance(reason, str) else "")


def convert(error: BaseException | None, attempt: Attempt) -> ConnectionFailedError:
    """websocket-client's report of how a connection ended, as one of our exceptions."""
    if isinstance(error, ConnectionFailedError):
        return error
    code, reason = attempt.close_code, attempt.close_reason
    if error is None:
        text = "closed by the exchange" if code is not None else "connection closed"
        return ConnectionLostError(f"{text}{': ' + reason if reason else ''}", code=code)
    if isinstance(error, _wsclient.MessageTooBigError):
        converted: ConnectionFailedError = ConnectionLostError(str(error), code=1009)
    elif isinstance(error, websocket.WebSocketBadStatusException):
        status = getattr(error, "status_code", None)
        headers = getattr(error, "resp_headers", None) or {}
        converted = HandshakeFailedError(
            status if isinstance(status, int) else None, str(error), headers
        )
    elif attempt.opened_at is None and isinstance(error, websocket.WebSocketException):
        converted = HandshakeFailedError(101, f"invalid upgrade: {error}")
    else:
        frame_code, frame_reason = _close_args(error)
        code = code if code is not None else frame_code
        reason = reason or frame_reason
        if frame_code is not None or isinstance(error, websocket.ABNF):
            text = f"closed by the exchange{': ' + reason if reason else ''}"
        elif isinstance(error, (TimeoutError, socket.timeout, websocket.WebSocketTimeoutException)):
            text = f"timed out: {error}"
        else:
            text = str(error) or type(error).__name__
        converted = ConnectionLostError(text, code=code)
    if isinstance(error, BaseException):
        converted.__cause__ = error
    return converted


def final_error(attempt: Attempt) -> ConnectionFailedError:
    return convert(attempt.error, attempt)
