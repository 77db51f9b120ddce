"""The user data subscriptions of one WebSocket API URL, over one connection at a time.

A :class:`UserDataSession` keeps one :class:`~wsmanager.userdata.connection.WsApiConnection`
carrying a ``userDataStream.subscribe.signature`` subscription for every account (API key) of the
manager on that URL. It makes each subscription again wherever it was lost:

- the socket dropped: the connection reconnects (backoff, the host's budget) and subscribes every
  account again;
- the connection reached ``max_connection_age``, or the exchange sent ``serverShutdown``: a
  successor connection opens and subscribes every account while the old one still delivers
  (make-before-break); the old one closes once the successor carries them all. An event both
  deliver is delivered once (the last events of each account are remembered to drop the copy);
- ``eventStreamTerminated`` for one of ours: subscribed again on the same connection.

Each window in which an account had no subscription becomes a :class:`~wsmanager.state.Gap` with
``stream="userData"``, handed to the ``on_gap`` listeners in order with the account's events:
``expected`` is the exchange's time (epoch ms) from which events may be missing (the last frame of
the lost connection, or the ``E`` of ``eventStreamTerminated``), ``received`` the exchange's time
when the new subscription was confirmed; so ``missing`` is the window's length in milliseconds.

A refusal (bad key, bad signature, ...) ends the account's subscription with
``on_error(StreamRejectedError("userData", code, msg))``; a timestamp outside ``recvWindow``
(-1021) first measures the clock offset with the ``time`` request and tries once more; the
exchange's rate limits and a busy server (429/418/5xx, -1003, -1007, -1008) are tried again up to
:data:`~wsmanager.userdata.accounts.MAX_TRANSIENT_RETRIES` times, after a backoff delay (or the
``retryAfter`` the exchange gives, if longer).
"""

from __future__ import annotations

import itertools
import logging
import ssl
import time
from typing import Any

from ..backoff import BackoffPolicy
from ..config import WSManagerConfig
from ..core._locks import make_lock
from ..core.delivery import DeliveryLoop, Ending, StreamFeed, Subscription
from ..errors import (
    ConnectionFailedError,
    HandshakeFailedError,
    HandshakeRejectedError,
    RetriesExhaustedError,
    WSManagerError,
)
from ..net.boundary import is_permanent_status
from . import protocol
from .accounts import (
    STREAM,
    Account,
    PendingRequest,
)
from .connection import WsApiConnection
from .inbound import Inbound
from .keys import Credentials

__all__ = ["STREAM", "Account", "UserDataSession"]

log = logging.getLogger("wsmanager")

_numbers = itertools.count(1)
_request_ids = itertools.count(1)


class UserDataSession(Inbound):
    """The accounts of one WebSocket API URL and the connection(s) carrying them."""

    def __init__(
        self,
        url: str,
        config: WSManagerConfig,
        loop: DeliveryLoop,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.config = config
        self._loop = loop
        self._ssl_context = ssl_context
        self._lock = make_lock("userdata")
        self._policy = BackoffPolicy(config.base_retry_delay, config.max_retry_delay)
        self.accounts: dict[str, Account] = {}
        self.current: WsApiConnection | None = None
        self.successor: WsApiConnection | None = None
        self._pending: dict[int, PendingRequest] = {}
        self._ours: set[tuple[WsApiConnection, int]] = set()  # subscriptions we are ending
        self._threads: list[Any] = []
        self.offset_ms = 0  # the exchange's clock minus ours, once measured
        self.closed = False
        # Counters (under the lock)
        self.rotations = 0
        self.rejections = 0
        self.clock_corrections = 0

    # -- the manager's side ------------------------------------------------------------------

    def add(self, credentials: Credentials, subscription: Subscription) -> None:
        with self._lock:
            if self.closed:
                raise RuntimeError("the manager was destroyed")
            account = self.accounts.get(credentials.api_key)
            if account is None:
                feed = StreamFeed(
                    STREAM,
                    self._loop,
                    capacity=self.config.max_buffered_messages,
                    max_bytes=self.config.max_buffered_bytes,
                    rule=None,
                )
                feed.attach(self)
                account = Account(credentials, feed, waiting_since=time.monotonic())
                self.accounts[credentials.api_key] = account
                log.info("user data: subscribing account %s", credentials.masked)
                self._subscribe_everywhere(account)
            account.feed.subscribers = (*account.feed.subscribers, subscription)

    def remove(self, api_key: str, subscription: Subscription) -> None:
        with self._lock:
            subscription.deactivate()
            account = self.accounts.get(api_key)
            if account is None or subscription not in account.feed.subscribers:
                return
            left = tuple(s for s in account.feed.subscribers if s is not subscription)
            account.feed.subscribers = left
            if left:
                return
            log.info("user data: unsubscribing account %s", account.credentials.masked)
            self._drop_locked(account, Ending.UNSUBSCRIBED, None)

    def close(self) -> list[Any]:
        """End every account (``on_complete``) and stop the connections; return the threads."""
        with self._lock:
            self.closed = True
            for account in list(self.accounts.values()):
                self._drop_locked(account, Ending.COMPLETED, None, unsubscribe=False)
            for connection in (self.current, self.successor):
                if connection is not None:
                    connection.stop()
            self.current = self.successor = None
            return list(self._threads)

    def _connection_locked(self) -> WsApiConnection | None:
        if self.current is None and not self.closed:
            self.current = self._start_locked()
        return self.current

    def _start_locked(self) -> WsApiConnection:
        connection = WsApiConnection(
            next(_numbers), self.url, self.config, self, ssl_context=self._ssl_context
        )
        self._threads = [t for t in self._threads if t.is_alive()]
        self._threads.append(connection.thread)
        connection.start()
        return connection

    def _subscribe_everywhere(self, account: Account) -> None:
        for candidate in (self._connection_locked(), self.successor):
            if candidate is not None and candidate.is_open:
                self._subscribe_locked(account, candidate)

    def _subscribe_locked(self, account: Account, connection: WsApiConnection) -> None:
        if connection in account.live or connection in account.asked:
            return
        account.asked.add(connection)
        params = protocol.subscribe_params(
            account.credentials, int(time.time() * 1000) + self.offset_ms
        )
        self._send_locked(connection, protocol.SUBSCRIBE, params, account.credentials.api_key)

    def _send_locked(
        self,
        connection: WsApiConnection,
        method: str,
        params: dict[str, Any] | None,
        api_key: str | None,
    ) -> None:
        request_id = next(_request_ids)
        now = time.monotonic()
        self._pending[request_id] = PendingRequest(
            connection, method, api_key, now, int(time.time() * 1000)
        )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "user data connection %s: %s",
                connection.number,
                protocol.loggable(request_id, method, params),
            )
        connection.send(protocol.request(request_id, method, params))

    def _unsubscribe_locked(self, connection: WsApiConnection, number: int) -> None:
        self._ours.add((connection, number))
        self._send_locked(connection, protocol.UNSUBSCRIBE, {"subscriptionId": number}, None)

    def _drop_locked(
        self,
        account: Account,
        ending: Ending,
        error: Exception | None,
        *,
        unsubscribe: bool = True,
    ) -> None:
        del self.accounts[account.credentials.api_key]
        for connection, number in account.live.items():
            if unsubscribe and connection.is_open:
                self._unsubscribe_locked(connection, number)
        account.live.clear()
        account.feed.finish(ending, account.feed.subscribers, error)
        if not self.accounts and not unsubscribe:
            return
        if not self.accounts:
            for open_one in (self.current, self.successor):
                if open_one is not None and not self._waits_locked(open_one):
                    self._retire_locked(open_one)
        self._promote_if_ready_locked()

    def _waits_locked(self, connection: WsApiConnection) -> bool:
        return any(r.connection is connection for r in self._pending.values())

    def _retire_locked(self, connection: WsApiConnection) -> None:
        """No account left: close ``connection`` (a later account opens a new one)."""
        if connection is self.current:
            self.current = None
        if connection is self.successor:
            self.successor = None
        connection.stop()

    # -- the connections' side (reader threads) ----------------------------------------------

    def opened(self, connection: WsApiConnection) -> None:
        with self._lock:
            if connection is not self.current and connection is not self.successor:
                connection.stop()
                return
            # No ask of this socket is stale (lost() forgot the last socket's), and an account
            # added since the connection was marked open was asked already: ask the others.
            for account in self.accounts.values():
                self._subscribe_locked(account, connection)

    def lost(self, connection: WsApiConnection, error: ConnectionFailedError) -> bool:
        with self._lock:
            self._forget_locked(connection)
            if connection is self.successor:
                self.successor = None
                return False
            if connection is not self.current:
                return False
            if self.successor is not None and self.successor.is_open:
                self.current, self.successor = self.successor, None
                return False
            return bool(self.accounts) and not self.closed

    def _forget_locked(self, connection: WsApiConnection) -> None:
        """``connection``'s socket is gone: its subscriptions and requests with it."""
        now = time.monotonic()
        for request_id in [i for i, r in self._pending.items() if r.connection is connection]:
            del self._pending[request_id]
        self._ours = {entry for entry in self._ours if entry[0] is not connection}
        for account in self.accounts.values():
            account.asked.discard(connection)
            if account.retry_on is connection:  # subscribed again when it opens
                account.retry_at = account.retry_on = None
            if account.live.pop(connection, None) is not None and not account.live:
                account.lost_at_ms = connection.last_frame_ms + self.offset_ms
                account.waiting_since = now
                log.warning(
                    "user data: account %s lost its subscription (connection %s ended)",
                    account.credentials.masked,
                    connection.number,
                )

    def failed(self, connection: WsApiConnection, error: ConnectionFailedError) -> None:
        with self._lock:
            if connection is self.successor:
                self.successor = None
                return
            if connection is not self.current:
                return
            self.current = None
            final: WSManagerError
            status = error.status_code if isinstance(error, HandshakeFailedError) else None
            if isinstance(error, HandshakeFailedError) and status and is_permanent_status(status):
                final = HandshakeRejectedError(STREAM, status, error.headers)
            else:
                final = RetriesExhaustedError(STREAM, connection.retry_attempt, error)
            log.error("user data: %s", final)
            for account in list(self.accounts.values()):
                self._drop_locked(account, Ending.FAILED, final, unsubscribe=False)

    def rotation_due(self, connection: WsApiConnection, reason: str) -> None:
        with self._lock:
            self._rotate_locked(connection, reason)

    def _rotate_locked(self, connection: WsApiConnection, reason: str) -> None:
        if connection is not self.current or self.successor is not None or self.closed:
            return
        if not self.accounts:
            return
        self.rotations += 1
        log.info("user data: %s; opening a successor connection", reason)
        self.successor = self._start_locked()
        self.successor.replacement = True

    def overdue(self, connection: WsApiConnection, now: float) -> str | None:
        """The read loop's timer (at least once a second): due retries are sent; a request
        unanswered for ``handshake_timeout`` means the connection is dead."""
        limit = self.config.handshake_timeout
        with self._lock:
            for account in self.accounts.values():
                if account.retry_on is connection and (account.retry_at or 0.0) <= now:
                    account.retry_at = account.retry_on = None
                    account.asked.discard(connection)
                    if connection.is_open:
                        self._subscribe_locked(account, connection)
            for request_id, request in self._pending.items():
                if request.connection is connection and now - request.sent_at > limit:
                    return (
                        f"the exchange did not answer {request.method} (id {request_id}) "
                        f"within handshake_timeout ({limit:g}s)"
                    )
        return None

    def ended(self, connection: WsApiConnection) -> None:
        with self._lock:
            if connection is self.current:
                self.current = None
            if connection is self.successor:
                self.successor = None

    def _promote_if_ready_locked(self) -> None:
        """The successor carries every account: it takes over, the old connection closes."""
        successor, old = self.successor, self.current
        if successor is None or not successor.is_open:
            return
        if any(successor not in account.live for account in self.accounts.values()):
            return
        self.current, self.successor = successor, None
        if old is not None:
            for account in self.accounts.values():
                account.live.pop(old, None)
                account.asked.discard(old)
            old.stop()
        log.info("user data: connection %s took over", successor.number)

    # -- figures -----------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        with self._lock:
            connections = [c for c in (self.current, self.successor) if c is not None]
            return {
                "connections": sum(1 for c in connections if c.is_open),
                "accounts": len(self.accounts),
                "live": sum(1 for a in self.accounts.values() if a.live),
                "events": sum(a.events for a in self.accounts.values()),
                "gaps": sum(a.gaps for a in self.accounts.values()),
                "duplicates": sum(a.duplicates for a in self.accounts.values()),
                "rejections": self.rejections,
                "rotations": self.rotations,
                "reconnects": sum(c.reconnects for c in connections),
                "clock_offset_ms": self.offset_ms,
            }

    def waiting(self, now: float) -> list[tuple[str, float]]:
        """(masked API key, seconds) of each account without a live subscription."""
        with self._lock:
            return [
                (a.credentials.masked, now - a.waiting_since)
                for a in self.accounts.values()
                if a.waiting_since is not None
            ]
