"""One WebSocket API connection: a reader thread, its reconnect loop, and an outbox of requests.

Built from the same parts as a market-stream connection (:mod:`wsmanager.connection`): the host's
connection budget (:data:`~wsmanager.limits.HOST_BUDGETS`, shared with the market streams of the
same host), :func:`~wsmanager.transport.open_socket` under one deadline, a
:class:`~wsmanager.guard.SocketGuard`, websocket-client through :mod:`wsmanager._wsclient`, and the
read loop of :mod:`wsmanager.readloop` (pings, dead-link detection, the maximum age, a clean
close), which also sends the requests queued by :meth:`WsApiConnection.send`, never faster than
the connection's :class:`~wsmanager.limits.MessageGate` allows. A failed attempt is followed by a
full-jitter backoff wait that :meth:`WsApiConnection.stop` cuts short.

What arrives is handed, decoded, to the owner (:class:`ConnectionOwner`) on the reader thread; the
owner decides what the connection sends and whether it reconnects.
"""

from __future__ import annotations

import logging
import random
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from ..backoff import BackoffPolicy
from ..config import WSManagerConfig, redact_url
from ..core.delivery import StreamFeed
from ..core.flow import Pressure
from ..core.targets import Target
from ..decode import decode_json
from ..errors import ConnectionFailedError, HandshakeFailedError
from ..net import _wsclient
from ..net.boundary import Attempt, convert, final_error, is_permanent_status, retry_after
from ..net.connection import SHUTDOWN_MIN_AGE
from ..net.guard import SocketGuard
from ..net.limits import HOST_BUDGETS, MessageGate, host_key
from ..net.readloop import ReadLoop
from ..net.socket_owner import SocketOwner

__all__ = ["ConnectionOwner", "WsApiConnection"]

log = logging.getLogger("wsmanager")


class ConnectionOwner(Protocol):
    """What a connection tells its owner, on the connection's reader thread."""

    def opened(self, connection: WsApiConnection) -> None: ...

    def received(self, connection: WsApiConnection, message: Any) -> None: ...

    def lost(self, connection: WsApiConnection, error: ConnectionFailedError) -> bool:
        """The socket ended (or never opened): True to try again after a backoff wait."""

    def failed(self, connection: WsApiConnection, error: ConnectionFailedError) -> None:
        """No more attempts: the handshake was refused for good, or the attempts ran out."""

    def rotation_due(self, connection: WsApiConnection, reason: str) -> None: ...

    def overdue(self, connection: WsApiConnection, now: float) -> str | None:
        """Why the connection is dead (a request unanswered too long), or None."""

    def ended(self, connection: WsApiConnection) -> None: ...


class _Loop(ReadLoop):
    """The read loop of a WebSocket API socket: also sends the connection's outbox."""

    def __init__(self, connection: WsApiConnection, app: Any, guard: SocketGuard) -> None:
        super().__init__(connection, app, guard)
        self.owner = connection

    def _has_work(self) -> bool:
        return bool(self.owner.outbox)

    def _send_due(self, now: float) -> None:
        super()._send_due(now)
        outbox = self.owner.outbox
        while outbox and self.gate.wait_time(now) == 0:
            self._send_text(outbox.popleft(), now)

    def _timers(self, now: float) -> None:
        super()._timers(now)
        reason = self.owner.owner.overdue(self.owner, now)
        if reason is not None:
            from ..errors import ConnectionLostError

            raise ConnectionLostError(reason)


class WsApiConnection(SocketOwner):
    """A WebSocket API connection. Counters are written only by its reader thread."""

    def __init__(
        self,
        number: int,
        url: str,
        config: WSManagerConfig,
        owner: ConnectionOwner,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__()
        self.number = number
        self.url = url
        self.display_url = redact_url(url)
        self.config = config
        self.owner = owner
        self.target = Target(url, combined=False)  # the read loop subscribes no stream here
        self.feeds: Mapping[str, StreamFeed] = {}
        self.changed_at = 0.0
        self.closed_by_us = False
        self.gate = MessageGate(config.max_client_messages_per_second)
        self.host_key = host_key(url)
        self.healthy_after = min(config.ping_interval, config.max_retry_delay)
        age = config.max_connection_age
        self.max_age = float("inf") if age is None else age * (1 - (rng or random).uniform(0, 0.1))
        self.rotate_at = float("inf")  # monotonic: when the read loop asks for a rotation
        self.rotate_reason = "the connection reached its maximum age"
        self.replacement = False  # opened to take over from another (rotation, serverShutdown)
        self._shutdown_seen = False  # this socket announced serverShutdown (acted on once)
        self.outbox: deque[str] = deque()  # texts to send, in order (any thread appends)
        self._ssl_context = ssl_context
        self._rng = rng
        self._policy = BackoffPolicy(config.base_retry_delay, config.max_retry_delay)
        self._attempt = Attempt()
        # Written by the reader thread only.
        self.is_open = False
        self.opened_at: float | None = None  # monotonic
        self.last_frame_ms = 0  # epoch ms of the last frame received
        self.messages_received = 0
        self.invalid_messages = 0
        self.attempts = 0
        self.reconnects = 0
        self.retry_attempt = 0
        self.last_error: ConnectionFailedError | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"wsmanager-userdata-{number}", daemon=True
        )

    # -- control, from any thread ----------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def send(self, text: str) -> None:
        """Queue ``text``; the reader thread sends it as soon as the gate allows (dropped if the
        socket ends first: the owner sends what is needed again when it opens)."""
        self.outbox.append(text)
        self.wake()

    def restart(self) -> None:
        """Cut the socket: the reconnect loop opens ``self.url`` again (after a short wait)."""
        self._cut()

    # -- for the read loop -----------------------------------------------------------------------

    def proved_healthy(self) -> None:
        self.retry_attempt = 0

    def rotation_due(self, reason: str) -> None:
        log.info("user data connection %s: %s; rotating", self.number, reason)
        self.owner.rotation_due(self, reason)

    def rotation_timer(self, now: float) -> None:
        """The read loop's timer: ask once for the rotation that is due."""
        if now >= self.rotate_at:
            self.rotate_at = float("inf")
            self.rotation_due(self.rotate_reason)

    def shutdown_announced(self) -> bool:
        """The exchange sent ``serverShutdown`` on this socket: True to hand over now. As for
        market connections (:meth:`wsmanager.net.connection.Connection.shutdown_announced`):
        once per socket, and a replacement younger than ``SHUTDOWN_MIN_AGE`` only once it is
        that old, so a flood of it cannot spend the connection budget."""
        if self._shutdown_seen:
            return False
        self._shutdown_seen = True
        now = time.monotonic()
        opened = self.opened_at if self.opened_at is not None else now
        if self.replacement and now - opened < SHUTDOWN_MIN_AGE:
            self.rotate_reason = "the exchange announced serverShutdown"
            self.rotate_at = min(self.rotate_at, opened + SHUTDOWN_MIN_AGE)
            return False
        return True

    def stream_refused(self, stream: str, code: int | None, reason: str) -> None:
        pass  # the read loop subscribes no stream here

    def note_resubscribe(self, stream: str) -> None:
        pass

    # -- the reader thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._reconnect_loop()
        except BaseException as exc:  # a bug of ours: report it, never leave a silent account
            log.exception("user data connection %s: reader thread failed", self.number)
            error = ConnectionFailedError(f"internal error in wsmanager: {exc!r}")
            error.__cause__ = exc
            if not self._stop.is_set():
                self.owner.failed(self, error)
        finally:
            self.is_open = False
            self._close_wake()
            self.owner.ended(self)

    def _reconnect_loop(self) -> None:
        while not self._stop.is_set():
            acquired, _waited = HOST_BUDGETS.acquire(
                self.host_key, self.config.connection_budget, self._stop
            )
            if not acquired:
                return
            self.attempts += 1
            url = self.url
            attempt = self._connect_and_read()
            if self._stop.is_set():
                return
            error = final_error(attempt)
            self.last_error = error
            if not self.owner.lost(self, error):
                return
            self.retry_attempt += 1
            status = error.status_code if isinstance(error, HandshakeFailedError) else None
            if status is not None and is_permanent_status(status) and url == self.url:
                self.owner.failed(self, error)
                return
            limit = self.config.max_retry_attempts
            if limit is not None and self.retry_attempt >= limit:
                self.owner.failed(self, error)
                return
            delay = self._policy.delay(self.retry_attempt - 1, self._rng)
            pause = retry_after(error)
            if pause is not None:
                HOST_BUDGETS.pause(self.host_key, pause)
                delay = max(delay, pause)
            log.info(
                "user data connection %s: %s; retry %d in %.2fs",
                self.number,
                error,
                self.retry_attempt,
                delay,
            )
            if self._stop.wait(delay):
                return

    def _connect_and_read(self) -> Attempt:
        self._attempt = attempt = Attempt()
        self.outbox.clear()  # requests for a socket that is gone; opened() makes them again
        opened = self._connect(self.url, attempt)
        if opened is None:
            return attempt
        sock, guard = opened
        app = _wsclient.App(
            self.url,
            loop_factory=lambda app: _Loop(self, app, guard),
            on_open=lambda app: self._on_open(app, sock, guard),
            on_data=self._on_data,
            on_error=self._on_error,
            on_close=self._on_close,
            on_ping=lambda app, data: self.gate.record(time.monotonic()),
            socket=guard,
        )
        try:
            self._run_app(app, sock, guard, attempt)
        finally:
            self.is_open = False
        return attempt

    # -- websocket-client callbacks, on the reader thread ----------------------------------------

    def _on_open(self, app: _wsclient.App, sock: socket.socket, guard: SocketGuard) -> None:
        installed = self._install(app, sock, guard, self._attempt)
        if installed is None:
            return
        loop, reader = installed
        now = time.monotonic()
        self._attempt.opened_at = self.opened_at = now
        self.rotate_at = now + self.max_age
        self.rotate_reason = "the connection reached its maximum age"
        self._shutdown_seen = False
        self.last_frame_ms = int(time.time() * 1000)
        if self.attempts > 1:
            self.reconnects += 1
        loop.opened(reader, [])
        self._set_open(True)
        self.is_open = True
        log.debug("user data connection %s: connected to %s", self.number, self.display_url)
        self.owner.opened(self)

    def deliver(self, messages: list[bytes], opcode: int, pressure: Pressure) -> None:
        """Whole messages (of one ``opcode``) the read loop parsed in one pass, in order."""
        for data in messages:
            self._on_data(None, data, opcode, True)

    def _on_data(self, app: _wsclient.App | None, data: bytes, opcode: int, fin: bool) -> None:
        self.messages_received += 1
        self.last_frame_ms = int(time.time() * 1000)
        if opcode != _wsclient.OPCODE_TEXT:
            self.invalid_messages += 1
            return
        loop = self._attempt.loop
        if loop is not None and loop.reader is None:
            too_big = _wsclient.over_limit(data, self.config.max_message_size)
            if too_big is not None:
                loop.failure = too_big
                return
        try:
            value = decode_json(data)
        except BaseException as exc:
            self.invalid_messages += 1
            log.warning("user data connection %s: a frame that is not JSON: %r", self.number, exc)
            return
        self.owner.received(self, value)

    def _on_error(self, app: _wsclient.App, error: BaseException) -> None:
        attempt = self._attempt
        if attempt.error is None:
            attempt.error = error
        self._cut()
        if not self._stop.is_set():
            log.info(
                "user data connection %s: connection lost: %s",
                self.number,
                convert(error, attempt),
            )

    def _on_close(self, app: _wsclient.App, code: Any, reason: Any) -> None:
        attempt = self._attempt
        if isinstance(code, int) and attempt.close_code is None:
            attempt.close_code = code
            attempt.close_reason = reason if isinstance(reason, str) else ""
