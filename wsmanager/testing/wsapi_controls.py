"""The WebSocket API controls of :class:`~wsmanager.testing.FakeExchange` (``ws_api=True``):
accounts, user data events, terminated subscriptions and the server's clock, from any thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from .listenkeys import PRIVATE_PATH, ListenKeys
from .wsapi import WS_API_PATH, Account, WsApi

__all__ = ["WsApiControls"]

T = TypeVar("T")


class WsApiControls:
    """Mixed into ``FakeExchange``; every call runs on the exchange's loop thread."""

    _wsapi: WsApi | None
    _listen_keys: ListenKeys | None

    def _run_sync(self, function: Callable[[], T], timeout: float = 10) -> T:
        raise NotImplementedError

    def _scheme(self) -> str:
        raise NotImplementedError

    host: str

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def ws_api_url(self) -> str:
        """``ws://127.0.0.1:<port>/ws-api/v3`` (the same port as the streams)."""
        return f"{self._scheme()}://{self.host}:{self.port}{WS_API_PATH}"

    def _api(self) -> WsApi:
        if self._wsapi is None:
            raise RuntimeError("the WebSocket API is off: make the exchange with ws_api=True")
        return self._wsapi

    def add_account(
        self,
        api_key: str,
        *,
        secret: str | bytes | None = None,
        public_key_pem: str | bytes | None = None,
    ) -> None:
        """Know ``api_key``: an HMAC ``secret``, or an Ed25519/RSA public key (PEM)."""
        if (secret is None) == (public_key_pem is None):
            raise ValueError("give exactly one of secret= (HMAC) or public_key_pem= (Ed25519/RSA)")
        public_key = None
        if public_key_pem is not None:
            from cryptography.hazmat.primitives.serialization import load_pem_public_key

            pem = public_key_pem.encode() if isinstance(public_key_pem, str) else public_key_pem
            public_key = load_pem_public_key(pem)
        raw = secret.encode() if isinstance(secret, str) else secret
        account = Account(api_key, raw, public_key)
        api = self._api()
        self._run_sync(lambda: api.accounts.__setitem__(api_key, account))

    def remove_account(self, api_key: str) -> None:
        """Forget ``api_key`` (its live subscriptions go on until they end)."""
        api = self._api()
        self._run_sync(lambda: api.accounts.pop(api_key, None))

    def push_user_event(self, api_key: str, event: Mapping[str, Any]) -> int:
        """Send ``event`` (e.g. ``{"e": "executionReport", "E": ms, ...}``) to every user data
        subscription of ``api_key``; return how many subscriptions got it."""
        api = self._api()
        return self._run_sync(lambda: api.push(api_key, event))

    def terminate_user_stream(self, api_key: str | None = None) -> int:
        """End the subscriptions of ``api_key`` (all when None) with ``eventStreamTerminated``
        (as when a listen token expires); return how many ended."""
        api = self._api()
        return self._run_sync(lambda: api.terminate(api_key))

    def set_clock_offset(self, seconds: float) -> None:
        """Run the exchange's clock ``seconds`` ahead of the real one (negative: behind)."""
        api = self._api()
        self._run_sync(lambda: setattr(api, "clock_offset_ms", int(seconds * 1000)))

    def answer_ws_api(self, answer: bool) -> None:
        """False: WebSocket API requests still take effect but are never answered."""
        api = self._api()
        self._run_sync(lambda: setattr(api, "answer_requests", bool(answer)))

    def refuse_user_data(
        self,
        status: int = 429,
        code: int = -1003,
        msg: str = "Too many requests; please use the websocket for live updates.",
        count: int = 1,
        retry_after: float = 0.0,
    ) -> None:
        """Answer the next ``count`` subscribe requests with this error (429/-1003: the
        exchange's rate limit; 503/-1008: the server busy); ``retry_after`` seconds > 0: with
        ``data: {serverTime, retryAfter}`` as the exchange sends on 429/418."""
        api = self._api()
        refusal = (status, code, msg, int(retry_after * 1000))
        self._run_sync(lambda: api.refusals.extend([refusal] * count))

    def user_subscriptions(self) -> dict[int, list[str]]:
        """Open WebSocket API connections (by id) and the API keys subscribed on each."""
        api = self._api()
        return self._run_sync(api.subscriptions)

    def user_subscription_count(self, api_key: str) -> int:
        """How many open connections carry a subscription of ``api_key``."""
        return sum(keys.count(api_key) for keys in self.user_subscriptions().values())

    # -- futures: listenKeys ------------------------------------------------------------------

    def _keys(self) -> ListenKeys:
        if self._listen_keys is None:
            raise RuntimeError("user data is off: make the exchange with ws_api=True")
        return self._listen_keys

    @property
    def futures_rest_url(self) -> str:
        """The base URL of the listenKey REST API (``POST/PUT/DELETE /fapi/v1/listenKey``):
        its own port, as python-websockets serves GET only."""
        return f"http://{self.host}:{self._keys().port}"

    @property
    def private_url(self) -> str:
        """``ws://127.0.0.1:<port>/private/ws`` (add ``?listenKey=<key>``)."""
        return f"{self._scheme()}://{self.host}:{self.port}{PRIVATE_PATH}"

    def listen_key(self, api_key: str) -> str | None:
        """``api_key``'s active listenKey (None: none)."""
        keys = self._keys()
        return self._run_sync(lambda: keys.active_key(api_key))

    def push_futures_event(self, api_key: str, event: Mapping[str, Any]) -> int:
        """Send ``event`` to every connection on ``api_key``'s active listenKey."""
        keys = self._keys()
        return self._run_sync(lambda: keys.push(api_key, dict(event)))

    def expire_listen_key(self, api_key: str) -> int:
        """Expire ``api_key``'s listenKey: ``listenKeyExpired`` to its connections, then nothing;
        a keep-alive of it is answered -1125."""
        keys = self._keys()
        return self._run_sync(lambda: keys.expire(api_key))

    def futures_connections(self, api_key: str) -> int:
        """Open connections on ``api_key``'s active listenKey."""
        keys = self._keys()

        def count() -> int:
            key = keys.active_key(api_key)
            return sum(1 for _, k in keys.clients.values() if k == key)

        return self._run_sync(count)
