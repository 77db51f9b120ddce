"""Binance's market-stream protocol, pure: which URL opens what, and what a control request
(``SUBSCRIBE``, ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS``, ``SET_PROPERTY``, ``GET_PROPERTY``) asks.

Error codes as Binance documents them: 0 unknown property, 1 invalid value type, 2 invalid
request, 3 invalid JSON (answered with ``"id": null``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from ..config import validate_stream_name
from ..errors import InvalidStreamNameError

__all__ = [
    "METHODS",
    "ControlError",
    "ControlRequest",
    "Route",
    "envelope",
    "error_answer",
    "parse_request",
    "result_answer",
    "route",
    "stream_name_error",
]

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
_INT64 = (-(2**63), 2**63 - 1)


class Route(NamedTuple):
    """What a WebSocket URL opens: its streams, and whether payloads come enveloped."""

    streams: tuple[str, ...]
    combined: bool


def route(path: str) -> Route | None:
    """``/ws/<stream>``, ``/ws``, ``/stream?streams=a/b``, ``/stream``; None: unknown path."""
    parts = urlsplit(path)
    if parts.path in ("/ws", "/ws/"):
        return Route((), False)
    if parts.path.startswith("/ws/"):
        return Route((unquote(parts.path[len("/ws/") :]),), False)
    if parts.path in ("/stream", "/stream/"):
        streams: dict[str, None] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "streams":
                streams.update(dict.fromkeys(s for s in value.split("/") if s))
        return Route(tuple(streams), True)
    return None


def stream_name_error(name: object) -> str | None:
    """Why ``name`` is not a stream name (None: it is one)."""
    try:
        validate_stream_name(name)
    except InvalidStreamNameError as exc:
        return str(exc)
    return None


def envelope(stream: str, data_json: str) -> str:
    """The combined-stream wrapper around an already encoded payload."""
    return '{"stream":' + json.dumps(stream, ensure_ascii=False) + ',"data":' + data_json + "}"


@dataclass(frozen=True)
class ControlRequest:
    method: str
    params: list[Any]
    id: int | str | None


class ControlError(Exception):
    """A request the exchange answers with an error."""

    def __init__(self, code: int, msg: str, request_id: int | str | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.request_id = request_id


def error_answer(code: int, msg: str, request_id: int | str | None) -> dict[str, Any]:
    return {"error": {"code": code, "msg": msg}, "id": request_id}


def result_answer(result: Any, request_id: int | str | None) -> dict[str, Any]:
    return {"result": result, "id": request_id}


def _request_id(value: object) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and _INT64[0] <= value <= _INT64[1]:
        return value
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    raise ControlError(
        2,
        "Invalid request: request ID must be a 64-bit integer, "
        "a string (1-36 of A-Z a-z 0-9 _ -) or null",
    )


def parse_request(text: str | bytes) -> tuple[Any, ControlRequest]:
    """``(decoded JSON, request)``; raises :class:`ControlError` for what Binance refuses."""
    if isinstance(text, bytes):
        raise ControlError(3, "Invalid JSON: binary frames are not accepted")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ControlError(
            3, f"Invalid JSON: {exc.msg.lower()} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise ControlError(2, f"Invalid request: expected a JSON object, got {kind}")
    request_id = _request_id(document.get("id"))
    method = document.get("method")
    if method is None:
        raise ControlError(2, "Invalid request: missing field `method`", request_id)
    if method not in METHODS:
        raise ControlError(
            2,
            f"Invalid request: unknown variant `{method}`, expected one of "
            + ", ".join(f"`{m}`" for m in METHODS),
            request_id,
        )
    params = document.get("params", [])
    if not isinstance(params, list):
        raise ControlError(2, "Invalid request: `params` must be an array", request_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        if not all(isinstance(p, str) for p in params):
            raise ControlError(1, "Invalid value type: expected String", request_id)
    elif method == "LIST_SUBSCRIPTIONS":
        if params:
            raise ControlError(2, "Invalid request: too many parameters", request_id)
    else:
        expected = 2 if method == "SET_PROPERTY" else 1
        if len(params) != expected:
            which = "too many" if len(params) > expected else "missing"
            raise ControlError(2, f"Invalid request: {which} parameters", request_id)
        if not isinstance(params[0], str):
            raise ControlError(2, "Invalid request: property name must be a string", request_id)
        if params[0] != "combined":
            raise ControlError(0, "Unknown property", request_id)
        if method == "SET_PROPERTY" and not isinstance(params[1], bool):
            raise ControlError(1, "Invalid value type: expected Boolean", request_id)
    return document, ControlRequest(method, params, request_id)
