"""Futures user data (USD-M, COIN-M): a listenKey from the REST API, kept alive, renewed.

:class:`ListenKeyRest` speaks ``POST``/``PUT``/``DELETE <listen_key_path>`` (``/fapi/v1/listenKey``,
``/dapi/v1/listenKey``) with the ``X-MBX-APIKEY`` header (these requests are not signed).
A :class:`FuturesAccount` streams one account from the private route (``.../private/ws?listenKey=``
or a URL template with ``{listenKey}``) over a
:class:`~wsmanager.userdata.connection.WsApiConnection`, keeps the key alive every
``keepalive_interval`` (30 minutes) on a thread of its own, and takes a new key when the exchange
sends ``listenKeyExpired``, refuses the keep-alive (-1125) or refuses the handshake (HTTP 400).
Each window without a stream is a ``Gap(stream="userData")`` as for the spot WebSocket API.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from typing import Any

import requests

from ..config import WSManagerConfig
from ..core._locks import make_lock
from ..core.delivery import DeliveryLoop, Ending, StreamFeed, Subscription
from ..core.state import Gap
from ..errors import (
    ConnectionFailedError,
    HandshakeFailedError,
    RetriesExhaustedError,
    StreamRejectedError,
)
from .connection import WsApiConnection
from .keys import mask

__all__ = ["KEEPALIVE_INTERVAL", "FuturesAccount", "ListenKeyRest", "private_url"]

log = logging.getLogger("wsmanager")

KEEPALIVE_INTERVAL = 30 * 60.0  # seconds: the exchange's advice (a key lives 60 minutes)
STREAM = "userData"
GONE = -1125  # "This listenKey does not exist."
_EPOCH = object()


def private_url(template: str, listen_key: str) -> str:
    if "{listenKey}" in template:
        return template.replace("{listenKey}", listen_key)
    return f"{template}{'&' if '?' in template else '?'}listenKey={listen_key}"


class ListenKeyError(Exception):
    def __init__(self, code: int | None, msg: str) -> None:
        super().__init__(f"code {code}: {msg}")
        self.code = code
        self.msg = msg


class ListenKeyRest:
    """The listenKey REST calls of one account."""

    def __init__(self, rest_url: str, path: str, api_key: str, timeout: float) -> None:
        self.url = rest_url.rstrip("/") + path
        self._headers = {"X-MBX-APIKEY": api_key}
        self._timeout = timeout
        self._session = requests.Session()

    def _call(self, method: str) -> dict[str, Any]:
        try:
            answer = self._session.request(
                method, self.url, headers=self._headers, timeout=self._timeout
            )
            body = answer.json() if answer.content else {}
        except (requests.RequestException, ValueError) as exc:
            raise ListenKeyError(None, f"{method} listenKey failed: {type(exc).__name__}") from None
        if answer.status_code != 200 or not isinstance(body, dict):
            code = body.get("code") if isinstance(body, dict) else None
            msg = body.get("msg", "") if isinstance(body, dict) else ""
            status = answer.status_code
            raise ListenKeyError(code if isinstance(code, int) else None, f"HTTP {status} {msg}")
        return body

    def create(self) -> str:
        key = self._call("POST").get("listenKey")
        if not isinstance(key, str) or not key:
            raise ListenKeyError(None, "the answer carries no listenKey")
        return key

    def keepalive(self) -> None:
        self._call("PUT")

    def delete(self) -> None:
        self._call("DELETE")

    def close(self) -> None:
        self._session.close()


class FuturesAccount:
    """One futures account's stream (reference counted by its ``user_data`` calls)."""

    def __init__(
        self,
        api_key: str,
        rest: ListenKeyRest,
        url_template: str,
        config: WSManagerConfig,
        loop: DeliveryLoop,
        *,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.masked = mask(api_key)
        self._rest = rest
        self._template = url_template
        self._config = config
        self._interval = keepalive_interval
        self._ssl_context = ssl_context
        self._lock = make_lock("userdata")
        self.feed = StreamFeed(
            STREAM,
            loop,
            capacity=config.max_buffered_messages,
            max_bytes=config.max_buffered_bytes,
            rule=None,
        )
        self.feed.attach(self)
        self._stop = threading.Event()
        self._renew = threading.Event()
        self.connection: WsApiConnection | None = None
        self.lost_at_ms: int | None = None
        self.waiting_since: float | None = time.monotonic()
        self.events = self.gaps = self.renewals = self.keepalives = 0
        self.thread = threading.Thread(
            target=self._keep_alive, name=f"wsmanager-listenkey-{self.masked}", daemon=True
        )

    # -- the manager's side ------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def add(self, subscription: Subscription) -> None:
        self.feed.subscribers = (*self.feed.subscribers, subscription)

    def remove(self, subscription: Subscription) -> bool:
        """True when it was the last subscriber (the caller then calls :meth:`close`)."""
        subscription.deactivate()
        left = tuple(s for s in self.feed.subscribers if s is not subscription)
        self.feed.subscribers = left
        return not left

    def close(self, ending: Ending = Ending.UNSUBSCRIBED, error: Exception | None = None) -> None:
        self._stop.set()
        self._renew.set()
        self.feed.finish(ending, self.feed.subscribers, error)
        with self._lock:
            connection = self.connection
        if connection is not None:
            connection.stop()

    @property
    def done(self) -> bool:
        return self._stop.is_set()

    def figures(self) -> dict[str, int]:
        with self._lock:
            connection = self.connection
            return {
                "connections": int(connection is not None and connection.is_open),
                "accounts": 1,
                "live": int(self.waiting_since is None),
                "events": self.events,
                "gaps": self.gaps,
                "reconnects": connection.reconnects if connection is not None else 0,
            }

    def threads(self) -> list[threading.Thread]:
        with self._lock:
            connection = self.connection
        return [self.thread, *([connection.thread] if connection is not None else [])]

    # -- the keep-alive thread ---------------------------------------------------------------

    def _keep_alive(self) -> None:
        try:
            self._connect(self._rest.create())
            while not self._stop.is_set():
                renew = self._renew.wait(self._interval)
                if self._stop.is_set():
                    break
                self._renew.clear()
                if not renew:
                    try:
                        self._rest.keepalive()
                        self.keepalives += 1
                        continue
                    except ListenKeyError as exc:
                        if exc.code != GONE:
                            log.warning("user data %s: keep-alive failed: %s", self.masked, exc)
                            continue
                self._connect(self._rest.create())
                self.renewals += 1
        except ListenKeyError as exc:
            if not self._stop.is_set():
                log.error("user data %s: no listenKey: %s", self.masked, exc)
                self.close(Ending.FAILED, StreamRejectedError(STREAM, exc.code, exc.msg))
        except BaseException:
            log.exception("user data %s: the keep-alive thread failed", self.masked)
            self.close(Ending.FAILED, StreamRejectedError(STREAM, None, "internal error"))
        finally:
            if self._stop.is_set():
                with contextlib.suppress(ListenKeyError):
                    self._rest.delete()
            self._rest.close()

    def _connect(self, listen_key: str) -> None:
        url = private_url(self._template, listen_key)
        with self._lock:
            connection = self.connection
            if connection is None:
                if self._stop.is_set():
                    return
                self.connection = WsApiConnection(
                    0, url, self._config, self, ssl_context=self._ssl_context
                )
                # the listenKey lets anyone read the account's events: never shown
                self.connection.display_url = private_url(self._template, "<listenKey>")
                self.connection.start()
                return
        connection.url = url  # the next attempt opens the new key's stream
        connection.restart()

    # -- the connection's side (its reader thread) -------------------------------------------

    def opened(self, connection: WsApiConnection) -> None:
        with self._lock:
            self.waiting_since = None
            if self.lost_at_ms is not None:
                now_ms = int(time.time() * 1000)
                gap = Gap(STREAM, self.lost_at_ms, max(now_ms, self.lost_at_ms), True)
                self.lost_at_ms = None
                self.gaps += 1
                self.feed.add_gap(gap)
        log.info("user data %s: streaming", self.masked)

    def received(self, connection: WsApiConnection, message: Any) -> None:
        if type(message) is not dict:
            return
        if message.get("e") == "listenKeyExpired":
            log.warning("user data %s: the listenKey expired; taking a new one", self.masked)
            with self._lock:
                when = message.get("E")
                if self.lost_at_ms is None:
                    self.lost_at_ms = when if isinstance(when, int) else connection.last_frame_ms
                    self.waiting_since = time.monotonic()
            self._renew.set()
            return
        with self._lock:
            self.events += 1
            self.feed.offer(self, _EPOCH, message, 0)

    def lost(self, connection: WsApiConnection, error: ConnectionFailedError) -> bool:
        with self._lock:
            if self.lost_at_ms is None and connection.opened_at is not None:
                self.lost_at_ms = connection.last_frame_ms
                self.waiting_since = time.monotonic()
        if self._stop.is_set():
            return False
        if isinstance(error, HandshakeFailedError) and error.status_code == 400:
            try:  # the key is gone: the next attempt opens a new one's stream
                connection.url = private_url(self._template, self._rest.create())
                self.renewals += 1
            except ListenKeyError as exc:
                log.warning("user data %s: no new listenKey: %s", self.masked, exc)
        return True

    def failed(self, connection: WsApiConnection, error: ConnectionFailedError) -> None:
        final = RetriesExhaustedError(STREAM, connection.retry_attempt, error)
        log.error("user data %s: %s", self.masked, final)
        self._stop.set()
        self._renew.set()
        self.feed.finish(Ending.FAILED, self.feed.subscribers, final)

    def rotation_due(self, connection: WsApiConnection, reason: str) -> None:
        connection.restart()  # a private stream has nothing to hand over: reconnect

    def overdue(self, connection: WsApiConnection, now: float) -> str | None:
        return None

    def ended(self, connection: WsApiConnection) -> None:
        pass
