"""The WebSocket API's wire, for user data streams (pure).

Requests are ``{"id", "method", "params"}``; the signed subscription carries ``apiKey``,
``timestamp``, ``recvWindow`` and ``signature`` over the other parameters sorted by name
(``name=value`` joined by ``&``). What the exchange sends is one of: an answer
(``{"id", "status", "result" | "error"}``), an event of a subscription
(``{"subscriptionId", "event"}``) or a connection event (``{"event": {"e": "serverShutdown"}}``).
:func:`loggable` is what may be logged of a request: the signature cut, the API key masked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .keys import Credentials, mask

__all__ = [
    "DEFAULT_RECV_WINDOW",
    "Answer",
    "Event",
    "classify",
    "loggable",
    "request",
    "signature_payload",
    "subscribe_params",
]

DEFAULT_RECV_WINDOW = 5000  # ms, the exchange's default (and its advice: 5000 or less)
SUBSCRIBE = "userDataStream.subscribe.signature"
UNSUBSCRIBE = "userDataStream.unsubscribe"
TIME = "time"


def signature_payload(params: Mapping[str, Any]) -> str:
    """Every parameter but ``signature``, sorted by name, ``name=value`` joined by ``&``."""
    return "&".join(
        f"{name}={value if isinstance(value, str) else json.dumps(value)}"
        for name, value in sorted(params.items())
        if name != "signature"
    )


def subscribe_params(
    credentials: Credentials, timestamp_ms: int, recv_window: int = DEFAULT_RECV_WINDOW
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "apiKey": credentials.api_key,
        "recvWindow": recv_window,
        "timestamp": timestamp_ms,
    }
    params["signature"] = credentials.sign(signature_payload(params))
    return params


def request(request_id: int, method: str, params: Mapping[str, Any] | None = None) -> str:
    document: dict[str, Any] = {"id": request_id, "method": method}
    if params is not None:
        document["params"] = dict(params)
    return json.dumps(document, separators=(",", ":"))


def loggable(request_id: int, method: str, params: Mapping[str, Any] | None = None) -> str:
    """A request as it may appear in a log: no signature, the API key masked."""
    shown = dict(params or {})
    if "signature" in shown:
        shown["signature"] = "<hidden>"
    if isinstance(shown.get("apiKey"), str):
        shown["apiKey"] = mask(shown["apiKey"])
    return f"{method} (id {request_id}) {shown}"


@dataclass(frozen=True)
class Answer:
    """The answer to request ``id``: ``result``, or ``code``/``msg`` of its error."""

    id: Any
    status: int | None
    result: Any = None
    code: int | None = None
    msg: str = ""
    retry_after_ms: int | None = None  # data.retryAfter - data.serverTime, when both are sent

    @property
    def ok(self) -> bool:
        return self.code is None and self.status in (None, 200)


@dataclass(frozen=True)
class Event:
    """An event: of subscription ``subscription_id``, or of the connection (None)."""

    subscription_id: int | None
    event: dict[str, Any]

    @property
    def kind(self) -> Any:
        return self.event.get("e")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def classify(message: Any) -> Answer | Event | None:
    """What a decoded message is (None: none of the documented shapes)."""
    if type(message) is not dict:
        return None
    if "status" in message and "id" in message:
        status = message.get("status")
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            data = error.get("data")
            wait = None  # retryAfter is the exchange's time (ms) when to try again
            if isinstance(data, dict):
                until, server = data.get("retryAfter"), data.get("serverTime")
                if isinstance(until, int) and isinstance(server, int) and _is_int(until):
                    wait = max(0, until - server)
            return Answer(
                message["id"],
                status if isinstance(status, int) else None,
                code=code if isinstance(code, int) else -1,
                msg=str(error.get("msg", "")),
                retry_after_ms=wait,
            )
        return Answer(
            message["id"], status if isinstance(status, int) else None, message.get("result")
        )
    event = message.get("event")
    if type(event) is dict:
        number = message.get("subscriptionId")
        if number is not None and (type(number) is not int):
            return None
        return Event(number, event)
    return None
