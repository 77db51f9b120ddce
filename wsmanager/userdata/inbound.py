"""What the exchange sends to a user data session: answers to its requests, and events.

:class:`Inbound` is the half of :class:`~wsmanager.userdata.session.UserDataSession` that runs
on a connection's reader thread for each message, under the session's lock: a subscription
confirmed (a ``Gap`` for the window before it, if there was one), refused (the clock measured and
corrected once on -1021, a transient refusal tried again later, else ``on_error``), the clock's
answer, an event handed to its account's feed once, ``eventStreamTerminated`` (subscribed again)
and ``serverShutdown`` (a successor connection).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from ..backoff import BackoffPolicy
from ..core.delivery import Ending
from ..core.state import Gap
from ..errors import StreamRejectedError
from . import protocol
from .accounts import (
    CLOCK_ERROR,
    MAX_TRANSIENT_RETRIES,
    STREAM,
    Account,
    PendingRequest,
    retry_after,
)
from .connection import WsApiConnection

__all__ = ["EPOCH", "Inbound"]

log = logging.getLogger("wsmanager")

EPOCH = object()  # the feeds' source epoch (user data has no sequence numbers to check)


class Inbound:
    """Mixed into ``UserDataSession``; every ``_locked`` method runs under its lock."""

    _lock: Any
    _policy: BackoffPolicy
    _pending: dict[int, PendingRequest]
    _ours: set[tuple[WsApiConnection, int]]
    accounts: dict[str, Account]
    current: WsApiConnection | None
    successor: WsApiConnection | None
    offset_ms: int
    rejections: int
    clock_corrections: int

    # -- the session's side (defined there) --------------------------------------------------

    def _send_locked(
        self,
        connection: WsApiConnection,
        method: str,
        params: dict[str, Any] | None,
        api_key: str | None,
    ) -> None:
        raise NotImplementedError

    def _subscribe_locked(self, account: Account, connection: WsApiConnection) -> None:
        raise NotImplementedError

    def _unsubscribe_locked(self, connection: WsApiConnection, number: int) -> None:
        raise NotImplementedError

    def _drop_locked(
        self, account: Account, ending: Ending, error: Exception | None, *, unsubscribe: bool = True
    ) -> None:
        raise NotImplementedError

    def _waits_locked(self, connection: WsApiConnection) -> bool:
        raise NotImplementedError

    def _retire_locked(self, connection: WsApiConnection) -> None:
        raise NotImplementedError

    def _promote_if_ready_locked(self) -> None:
        raise NotImplementedError

    def _rotate_locked(self, connection: WsApiConnection, reason: str) -> None:
        raise NotImplementedError

    # -- what arrives ------------------------------------------------------------------------

    def received(self, connection: WsApiConnection, message: Any) -> None:
        item = protocol.classify(message)
        with self._lock:
            if isinstance(item, protocol.Answer):
                self._answer_locked(connection, item)
            elif isinstance(item, protocol.Event):
                self._event_locked(connection, item, message)
            else:
                connection.invalid_messages += 1
                log.warning("user data connection %s: an unknown message", connection.number)

    # -- answers -----------------------------------------------------------------------------

    def _answer_locked(self, connection: WsApiConnection, answer: protocol.Answer) -> None:
        request = self._pending.pop(answer.id, None) if isinstance(answer.id, int) else None
        if request is None or request.connection is not connection:
            return
        account = self.accounts.get(request.api_key) if request.api_key else None
        if request.method == protocol.UNSUBSCRIBE:
            if not answer.ok:
                log.warning("user data: unsubscribe refused (code %s): %s", answer.code, answer.msg)
            if not self.accounts and not self._waits_locked(connection):
                self._retire_locked(connection)
            return
        if request.method == protocol.TIME:
            self._clock_answer_locked(connection, request, answer, account)
            return
        number = answer.result.get("subscriptionId") if isinstance(answer.result, dict) else None
        if account is None or connection not in account.asked:
            if answer.ok and isinstance(number, int):  # unsubscribed meanwhile
                self._ours.add((connection, number))
                self._unsubscribe_locked(connection, number)
            return
        account.asked.discard(connection)
        if answer.ok and isinstance(number, int):
            self._subscribed_locked(account, connection, number)
        elif answer.code == CLOCK_ERROR and not account.clock_retried:
            account.clock_retried = True
            account.asked.add(connection)
            log.warning(
                "user data: account %s: the exchange says our clock is off (%s); measuring it",
                account.credentials.masked,
                answer.msg,
            )
            self._send_locked(connection, protocol.TIME, None, account.credentials.api_key)
        elif (wait := retry_after(answer)) is not None and account.retries < MAX_TRANSIENT_RETRIES:
            account.retries += 1
            delay = max(wait, self._policy.delay(account.retries - 1))
            account.retry_at, account.retry_on = time.monotonic() + delay, connection
            account.asked.add(connection)  # nothing else is sent for it here meanwhile
            log.warning(
                "user data: account %s: subscribe refused for now (code %s: %s); retry %d in %.2fs",
                account.credentials.masked,
                answer.code,
                answer.msg,
                account.retries,
                delay,
            )
        else:
            self.rejections += 1
            error = StreamRejectedError(STREAM, answer.code, answer.msg)
            log.error("user data: account %s: %s", account.credentials.masked, error)
            self._drop_locked(account, Ending.FAILED, error)

    def _clock_answer_locked(
        self,
        connection: WsApiConnection,
        request: PendingRequest,
        answer: protocol.Answer,
        account: Account | None,
    ) -> None:
        server = answer.result.get("serverTime") if isinstance(answer.result, dict) else None
        if isinstance(server, int):
            # The exchange read its clock between our send and now: taking "now" errs on the
            # side of timestamps behind its clock (accepted within recvWindow), never ahead of
            # it (refused from 1 s ahead), however long the round trip.
            now_ms = int(time.time() * 1000)
            self.offset_ms = server - now_ms
            self.clock_corrections += 1
            log.warning("user data: the exchange's clock is %+d ms from ours", self.offset_ms)
        if account is None:
            return
        account.asked.discard(connection)
        if connection.is_open:
            self._subscribe_locked(account, connection)

    def _subscribed_locked(
        self, account: Account, connection: WsApiConnection, number: int
    ) -> None:
        was_down = not account.live
        account.live[connection] = number
        account.clock_retried = False
        account.retries = 0
        if was_down:
            account.waiting_since = None
            if account.lost_at_ms is not None:
                now_ms = int(time.time() * 1000) + self.offset_ms
                gap = Gap(STREAM, account.lost_at_ms, max(now_ms, account.lost_at_ms), True)
                account.lost_at_ms = None
                account.gaps += 1
                account.resubscribes += 1
                account.feed.add_gap(gap)
        log.info(
            "user data: account %s subscribed on connection %s (subscription %d)",
            account.credentials.masked,
            connection.number,
            number,
        )
        self._promote_if_ready_locked()

    # -- events ------------------------------------------------------------------------------

    def _event_locked(
        self, connection: WsApiConnection, item: protocol.Event, message: Any
    ) -> None:
        if item.subscription_id is None:
            if item.kind == "serverShutdown" and connection.shutdown_announced():
                self._rotate_locked(connection, "the exchange announced serverShutdown")
            return
        number = item.subscription_id
        account = next(
            (a for a in self.accounts.values() if a.live.get(connection) == number), None
        )
        if account is None:
            if item.kind == "eventStreamTerminated":
                self._ours.discard((connection, number))
            return
        if item.kind == "eventStreamTerminated":
            self._terminated_locked(account, connection, item)
            return
        key = json.dumps(item.event, sort_keys=True, separators=(",", ":"))
        if account.first_time(key):
            account.events += 1
            account.feed.offer(self, EPOCH, item.event, len(key))

    def _terminated_locked(
        self, account: Account, connection: WsApiConnection, item: protocol.Event
    ) -> None:
        del account.live[connection]
        log.warning(
            "user data: the exchange ended the subscription of account %s; subscribing again",
            account.credentials.masked,
        )
        if not account.live:
            when = item.event.get("E")
            account.lost_at_ms = when if isinstance(when, int) else connection.last_frame_ms
            account.waiting_since = time.monotonic()
        if connection.is_open and connection in (self.current, self.successor):
            self._subscribe_locked(account, connection)
