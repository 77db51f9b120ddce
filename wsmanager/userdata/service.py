"""A manager's user data streams: one :class:`~wsmanager.userdata.session.UserDataSession` per
WebSocket API URL, one callback thread for all their accounts.

:meth:`UserDataStreams.subscribe` is what :meth:`WSManager.user_data
<wsmanager.WSManager.user_data>` does: check the arguments (a clear ``ValueError``/``TypeError``
naming what is wrong, the API key shown by its first 4 characters only), load the key, and add a
subscriber to the account's subscription, which calls with the same API key share.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._redact import redact_url
from ..config import WSManagerConfig
from ..core._locks import make_lock
from ..core.delivery import DeliveryLoop, Ending, GapCallback, Subscription
from .futures import KEEPALIVE_INTERVAL, FuturesAccount, ListenKeyRest
from .keys import Credentials
from .session import STREAM, UserDataSession

__all__ = ["UserDataFigures", "UserDataStreams"]


@dataclass(frozen=True)
class UserDataFigures:
    """Counts over every user data session of a manager."""

    connections: int = 0  # WebSocket API connections open now
    accounts: int = 0  # accounts (API keys) subscribed through user_data
    live: int = 0  # accounts whose subscription is live now
    events: int = 0  # events delivered (duplicates from a handover excluded)
    gaps: int = 0  # windows without a subscription, reported as Gap
    rejections: int = 0  # subscriptions the exchange refused for good
    rotations: int = 0  # successor connections opened (age, serverShutdown)
    reconnects: int = 0


class UserDataStreams:
    """Owned by a manager; every thread it starts ends on :meth:`close`."""

    def __init__(
        self,
        config: WSManagerConfig,
        default_url: str | None,
        gap_listeners: Callable[[], tuple[GapCallback, ...]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        listen_key_path: str | None = None,
    ) -> None:
        self._config = config
        self._default_url = default_url
        self._listen_key_path = listen_key_path  # set: futures (listenKeys), not the WS API
        self._futures: dict[tuple[str, str], FuturesAccount] = {}
        self._ssl_context = ssl_context
        self._loop = DeliveryLoop("userdata", gap_listeners)
        self._lock = make_lock("userdata-service")
        self._sessions: dict[str, UserDataSession] = {}
        self._closed = False

    def subscribe(
        self,
        callback: Callable[[Any], object],
        *,
        api_key: str,
        api_secret: str | bytes | None = None,
        private_key: str | bytes | os.PathLike[str] | None = None,
        on_error: Callable[[Exception], object] | None = None,
        ws_api_url: str | None = None,
        keepalive_interval: float | None = None,
    ) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable or None, not {type(on_error).__name__}")
        url = ws_api_url if ws_api_url is not None else self._default_url
        if url is None:
            raise ValueError(
                "user_data needs ws_api_url= (this manager's endpoint has no WebSocket API)"
            )
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise ValueError(f"ws_api_url must be a ws:// or wss:// URL, not {redact_url(url)!r}")
        if self._listen_key_path is not None:
            return self._subscribe_futures(
                callback, on_error, api_key, url, keepalive_interval, api_secret, private_key
            )
        credentials = Credentials(api_key, api_secret=api_secret, private_key=private_key)
        subscription = Subscription(STREAM, callback, on_error)
        with self._lock:
            if self._closed:
                raise RuntimeError("the manager was destroyed")
            session = self._sessions.get(url)
            if session is None:
                session = UserDataSession(
                    url, self._config, self._loop, ssl_context=self._ssl_context
                )
                self._sessions[url] = session
            session.add(credentials, subscription)
        done = threading.Event()

        def unsubscribe() -> None:
            if not done.is_set():
                done.set()
                session.remove(credentials.api_key, subscription)

        return unsubscribe

    def _subscribe_futures(
        self,
        callback: Callable[[Any], object],
        on_error: Callable[[Exception], object] | None,
        api_key: str,
        url: str,
        keepalive_interval: float | None,
        api_secret: str | bytes | None,
        private_key: str | bytes | os.PathLike[str] | None,
    ) -> Callable[[], None]:
        """Futures: a listenKey (the API key alone authorises it; a secret, if given, is
        checked as for the spot API but not needed)."""
        if api_secret is not None or private_key is not None:
            Credentials(api_key, api_secret=api_secret, private_key=private_key)
        elif not isinstance(api_key, str) or not api_key or api_key.strip() != api_key:
            raise ValueError("api_key must be a non-empty string without surrounding spaces")
        rest_url = self._config.rest_url
        if rest_url is None:
            raise ValueError("futures user data needs rest_url= (where the listenKey is made)")
        interval = KEEPALIVE_INTERVAL if keepalive_interval is None else keepalive_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(f"keepalive_interval must be a number > 0, not {interval!r}")
        assert self._listen_key_path is not None
        subscription = Subscription(STREAM, callback, on_error)
        with self._lock:
            if self._closed:
                raise RuntimeError("the manager was destroyed")
            account = self._futures.get((url, api_key))
            if account is None or account.done:
                rest = ListenKeyRest(
                    rest_url, self._listen_key_path, api_key, self._config.handshake_timeout
                )
                account = FuturesAccount(
                    api_key,
                    rest,
                    url,
                    self._config,
                    self._loop,
                    keepalive_interval=float(interval),
                    ssl_context=self._ssl_context,
                )
                self._futures[(url, api_key)] = account
                account.start()
            account.add(subscription)
        done = threading.Event()

        def unsubscribe() -> None:
            if done.is_set():
                return
            done.set()
            with self._lock:
                last = account.remove(subscription)
                if last and self._futures.get((url, api_key)) is account:
                    del self._futures[(url, api_key)]
            if last:
                account.close()

        return unsubscribe

    def _all(self) -> list[UserDataSession]:
        with self._lock:
            return list(self._sessions.values())

    def figures(self) -> UserDataFigures:
        totals: dict[str, int] = {}
        for session in self._all():
            for name, value in session.figures().items():
                if name in UserDataFigures.__dataclass_fields__:
                    totals[name] = totals.get(name, 0) + value
        with self._lock:
            futures = list(self._futures.values())
        for account in futures:
            for name, value in account.figures().items():
                totals[name] = totals.get(name, 0) + value
        return UserDataFigures(**totals)

    def waiting(self) -> list[tuple[str, float]]:
        """(masked API key, seconds) of each account without a live subscription."""
        now = time.monotonic()
        with self._lock:
            futures = list(self._futures.values())
        waiting = [entry for session in self._all() for entry in session.waiting(now)]
        return waiting + [
            (a.masked, now - a.waiting_since) for a in futures if a.waiting_since is not None
        ]

    def close(self, timeout: float) -> None:
        """End every account and connection; wait up to ``timeout`` for their threads."""
        with self._lock:
            self._closed = True
            sessions, self._sessions = list(self._sessions.values()), {}
            futures, self._futures = list(self._futures.values()), {}
        threads = [thread for session in sessions for thread in session.close()]
        for account in futures:
            account.close(Ending.COMPLETED)
            threads += account.threads()
        self._loop.close()
        deadline = time.monotonic() + timeout
        current = threading.current_thread()
        for thread in [*threads, self._loop.thread]:
            if thread is not None and thread is not current and thread.ident is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
