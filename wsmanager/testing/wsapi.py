"""The exchange's WebSocket API (``/ws-api/v3``), as far as user data streams go: signed
``userDataStream.subscribe.signature``, ``userDataStream.unsubscribe``, ``session.subscriptions``,
``time`` and ``ping``, on the server's loop thread.

Requests are ``{"id", "method", "params"}``; answers ``{"id", "status", "result" | "error":
{"code", "msg"}, "rateLimits"}``. Signatures are verified as the exchange does it: the payload is
every parameter but ``signature``, sorted by name, ``name=value`` joined by ``&``; HMAC-SHA256 as
hex (case-insensitive), Ed25519 and RSA (PKCS#1 v1.5, SHA-256) as base64. ``timestamp`` must be
within ``recvWindow`` (default 5000 ms, at most 60000) behind the server's clock and less than
1 s ahead of it. Errors carry the documented codes: -1021 timestamp outside the recvWindow, -1022
invalid signature, -1102 a mandatory parameter missing, -1131 recvWindow too large, -2014 API-key
format invalid, -2015 unknown API key, -2035 subscription already active (one per account and
connection), -1000/-1100 for what cannot be parsed.

Events go out as ``{"subscriptionId": N, "event": {...}}``; ``serverShutdown`` as
``{"event": {"e": "serverShutdown", "E": ms}}``; ending a subscription (``unsubscribe`` or
:meth:`WsApi.terminate`) sends ``eventStreamTerminated`` to it. Needs ``cryptography``
(``pip install wsmanager[userdata]``) for Ed25519 and RSA accounts only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .connection import Client, text_frame
from .ledger import ControlEntry, Ledger
from .market import dumps

__all__ = ["WS_API_PATH", "Account", "WsApi", "signature_payload"]

WS_API_PATH = "/ws-api/v3"
MAX_RECV_WINDOW = 60000
DEFAULT_RECV_WINDOW = 5000
MAX_SUBSCRIPTIONS = 1000  # active ones per session
_KEY_FORMAT = re.compile(r"[A-Za-z0-9]{1,128}")


def signature_payload(params: Mapping[str, Any]) -> str:
    """What the exchange verifies: every parameter but ``signature``, sorted by name."""
    return "&".join(
        f"{name}={_text(value)}" for name, value in sorted(params.items()) if name != "signature"
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class Account:
    """An API key the exchange knows: an HMAC ``secret``, or an Ed25519/RSA public key."""

    api_key: str
    secret: bytes | None = None
    public_key: Any = None  # cryptography's Ed25519PublicKey or RSAPublicKey

    def verify(self, payload: str, signature: str) -> bool:
        data = payload.encode()
        if self.secret is not None:
            expected = hmac.new(self.secret, data, hashlib.sha256).hexdigest()
            return hmac.compare_digest(expected, signature.lower())
        try:
            raw = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        try:
            if isinstance(self.public_key, rsa.RSAPublicKey):
                self.public_key.verify(raw, data, padding.PKCS1v15(), hashes.SHA256())
            else:
                self.public_key.verify(raw, data)
        except InvalidSignature:
            return False
        return True


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str, retry_after_ms: int = 0) -> None:
        super().__init__(msg)
        self.status = status
        self.code = code
        self.msg = msg
        self.retry_after_ms = retry_after_ms  # > 0: the error carries data.retryAfter


@dataclass
class Session:
    """One WebSocket API connection: its user data subscriptions (id -> API key)."""

    client: Client
    subscriptions: dict[int, str] = field(default_factory=dict)
    next_id: int = 0
    weight: int = 0


class WsApi:
    """The WebSocket API's state and answers (the server's loop thread only)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.accounts: dict[str, Account] = {}
        self.sessions: dict[int, Session] = {}  # by connection id
        self.clock_offset_ms = 0  # the server's clock minus the real one
        self.answer_requests = True
        self.events_sent = 0
        self.refusals: list[tuple[int, int, str, int]] = []  # next subscribes: ApiError args

    # -- connections -------------------------------------------------------------------------

    def opened(self, client: Client) -> None:
        self.sessions[client.id] = Session(client)

    def closed(self, client: Client) -> None:
        self.sessions.pop(client.id, None)

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    # -- requests ----------------------------------------------------------------------------

    def on_message(self, client: Client, message: str | bytes) -> None:
        session = self.sessions.get(client.id)
        if session is None:
            return
        request_id: Any = None
        document: Any = message
        after: list[str] = []
        try:
            if isinstance(message, bytes):
                raise ApiError(400, -1000, "Binary frames are not accepted.")
            try:
                document = json.loads(message)
            except ValueError:
                raise ApiError(400, -1000, "Invalid JSON.") from None
            if not isinstance(document, dict) or not isinstance(document.get("method"), str):
                raise ApiError(400, -1100, "Invalid request: missing field `method`.")
            request_id = document.get("id")
            params = document.get("params", {})
            if not isinstance(params, dict):
                raise ApiError(400, -1100, "Invalid request: `params` must be an object.")
            result = self._apply(session, document["method"], params, after)
            session.weight += 2
            answer = {"id": request_id, "status": 200, "result": result}
        except ApiError as exc:
            session.weight += 2
            error: dict[str, Any] = {"code": exc.code, "msg": exc.msg}
            if exc.retry_after_ms:
                now = self.now_ms()
                error["data"] = {"serverTime": now, "retryAfter": now + exc.retry_after_ms}
            answer = {"id": request_id, "status": exc.status, "error": error}
        answer["rateLimits"] = [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": 6000,
                "count": session.weight,
            }
        ]
        if not self.answer_requests:
            self.ledger.control(ControlEntry(client.id, document, None))
            return
        self.ledger.control(ControlEntry(client.id, document, answer))
        client.write(text_frame(dumps(answer).encode()))
        for text in after:
            client.write(text_frame(text.encode()))

    def _apply(
        self, session: Session, method: str, params: dict[str, Any], after: list[str]
    ) -> Any:
        if method.startswith("v3/"):
            method = method[3:]
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": self.now_ms()}
        if method == "session.subscriptions":
            return [{"subscriptionId": number} for number in session.subscriptions]
        if method == "userDataStream.subscribe.signature":
            return self._subscribe(session, params)
        if method == "userDataStream.unsubscribe":
            number = params.get("subscriptionId")
            if number is None:
                numbers = list(session.subscriptions)
            elif isinstance(number, int) and not isinstance(number, bool):
                numbers = [number] if number in session.subscriptions else []
            else:
                raise ApiError(400, -1100, "Illegal value of parameter 'subscriptionId'.")
            for number in numbers:
                del session.subscriptions[number]
                after.append(self._terminated(number))
            return {}
        raise ApiError(400, -1100, f"Unknown method '{method}'.")

    def _subscribe(self, session: Session, params: dict[str, Any]) -> dict[str, int]:
        if self.refusals:
            raise ApiError(*self.refusals.pop(0))
        for name in ("apiKey", "timestamp", "signature"):
            if name not in params:
                raise ApiError(
                    400,
                    -1102,
                    f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.",
                )
        api_key = params["apiKey"]
        if not isinstance(api_key, str) or not _KEY_FORMAT.fullmatch(api_key):
            raise ApiError(401, -2014, "API-key format invalid.")
        account = self.accounts.get(api_key)
        if account is None:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        self._check_time(params)
        signature = params["signature"]
        if not isinstance(signature, str) or not account.verify(
            signature_payload(params), signature
        ):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        if api_key in session.subscriptions.values():
            raise ApiError(400, -2035, "User Data Stream subscription already active.")
        if len(session.subscriptions) >= MAX_SUBSCRIPTIONS:
            raise ApiError(400, -1100, "Too many active subscriptions on this session.")
        number = session.next_id
        session.next_id += 1
        session.subscriptions[number] = api_key
        return {"subscriptionId": number}

    def _check_time(self, params: dict[str, Any]) -> None:
        timestamp = params["timestamp"]
        window = params.get("recvWindow", DEFAULT_RECV_WINDOW)
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            raise ApiError(400, -1100, "Illegal characters found in parameter 'timestamp'.")
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
            raise ApiError(400, -1100, "Illegal characters found in parameter 'recvWindow'.")
        if window > MAX_RECV_WINDOW:
            raise ApiError(400, -1131, "recvWindow must be less than 60000")
        if timestamp > 10**14:  # microseconds
            timestamp //= 1000
        now = self.now_ms()
        if timestamp >= now + 1000:
            raise ApiError(
                400, -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > window:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the recvWindow.")

    # -- events ------------------------------------------------------------------------------

    def push(self, api_key: str, event: Mapping[str, Any]) -> int:
        """Send ``event`` to every subscription of ``api_key``; return how many got it."""
        sent = 0
        body = dumps(dict(event))
        for session in list(self.sessions.values()):
            for number, key in session.subscriptions.items():
                if key == api_key and session.client.write(
                    text_frame(f'{{"subscriptionId":{number},"event":{body}}}'.encode())
                ):
                    sent += 1
        self.events_sent += sent
        return sent

    def terminate(self, api_key: str | None) -> int:
        """End the subscriptions of ``api_key`` (all when None) with ``eventStreamTerminated``."""
        ended = 0
        for session in list(self.sessions.values()):
            for number, key in list(session.subscriptions.items()):
                if api_key is None or key == api_key:
                    del session.subscriptions[number]
                    session.client.write(text_frame(self._terminated(number).encode()))
                    ended += 1
        return ended

    def _terminated(self, number: int) -> str:
        event = {"e": "eventStreamTerminated", "E": self.now_ms()}
        return dumps({"subscriptionId": number, "event": event})

    def subscriptions(self) -> dict[int, list[str]]:
        """Connection id -> the API keys subscribed on it."""
        return {cid: list(s.subscriptions.values()) for cid, s in self.sessions.items()}
