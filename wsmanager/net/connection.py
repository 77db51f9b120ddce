"""One connection to the exchange: a reader thread and its reconnect loop.

A :class:`Connection` carries a set of streams (one, in raw mode). Its reader thread, until
stopped: waits for the host's connection budget (:mod:`wsmanager.net.limits`), opens a socket
(:mod:`wsmanager.net.transport`) under one deadline, runs websocket-client's
``WebSocketApp.run_forever`` on it through a :class:`~wsmanager.net.guard.SocketGuard` with our read
loop (:mod:`wsmanager.net.readloop`), routes each message to its stream's feed, and after a failure
waits a full-jitter backoff delay on an ``Event`` that :meth:`Connection.stop` sets.

What websocket-client reports becomes our own exceptions in :mod:`wsmanager.net.boundary`; every way
out of the reader thread ends in a reconnect or in ``listener.connection_failed`` — also a bug of
ours — never in a silent, dead stream.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..backoff import BackoffPolicy
from ..config import WSManagerConfig, redact_url
from ..core.delivery import StreamFeed
from ..core.state import ConnectionState
from ..core.targets import Target
from ..errors import (
    ConnectionFailedError,
    HandshakeFailedError,
    HandshakeRejectedError,
    RetriesExhaustedError,
    WSManagerError,
)
from . import _wsclient
from .boundary import Attempt, convert, final_error, is_permanent_status, retry_after
from .datapath import DataPath
from .guard import SocketGuard
from .limits import HOST_BUDGETS, MessageGate, host_key
from .readloop import ReadLoop
from .socket_owner import SocketOwner
from .transport import shutdown_quietly

__all__ = ["SHUTDOWN_MIN_AGE", "Connection", "ConnectionListener", "ErrorFactory"]

log = logging.getLogger("wsmanager")

ErrorFactory = Callable[[str], WSManagerError]

SHUTDOWN_MIN_AGE = (
    30.0  # seconds: a replacement younger than this is not replaced for serverShutdown
)


class ConnectionListener(Protocol):
    """What a connection tells its owner. Called on the reader thread, never under its locks."""

    def connection_state_changed(
        self, connection: Connection, state: ConnectionState, socket_open: bool
    ) -> None: ...

    def connection_failed(self, connection: Connection, make_error: ErrorFactory) -> None: ...

    def stream_refused(
        self, connection: Connection, stream: str, code: int | None, reason: str
    ) -> None: ...

    def rotation_due(self, connection: Connection, reason: str) -> bool: ...

    def connection_ended(self, connection: Connection) -> None: ...


class Connection(SocketOwner, DataPath):
    """A connection carrying streams. Counters are written only by its reader thread."""

    def __init__(
        self,
        number: int,
        name: str,
        config: WSManagerConfig,
        target: Target,
        listener: ConnectionListener,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
        replacement: bool = False,
    ) -> None:
        super().__init__()
        self.number = number
        self.name = name
        self.config = config
        self.target = target
        self._listener = listener
        self._ssl_context = ssl_context
        self._rng = rng  # None: the random module's shared generator
        self._policy = BackoffPolicy(config.base_retry_delay, config.max_retry_delay)
        self.host_key = host_key(config.url, config.proxy)
        self.healthy_after = min(config.ping_interval, config.max_retry_delay)
        age = config.max_connection_age
        self.max_age = float("inf") if age is None else age * (1 - (rng or random).uniform(0, 0.1))
        self.gate = MessageGate(config.max_client_messages_per_second)
        # Copy-on-write: replaced whole (by the registry), never mutated; read by the reader.
        self.feeds: Mapping[str, StreamFeed] = {}
        self.changed_at = 0.0  # monotonic time of the last carry(): bursts share a SUBSCRIBE
        self.replacement = replacement  # opened by a handover (see shutdown_announced)
        # When the read loop asks for a rotation (monotonic; set at each open, re-armed by the
        # registry after an abandoned handover). A float: written by either thread, read by the
        # reader, never torn.
        self.rotate_at = float("inf")
        self.rotate_reason = "the connection reached its maximum age"
        self._shutdown_seen = False  # this socket announced serverShutdown (acted on once)
        self._names_in_url = True  # False after the exchange refused a combined URL (HTTP 400)
        self._guard: SocketGuard | None = None  # guarded by the socket lock
        self._attempt = Attempt()
        self._has_opened = False
        self.closed_by_us = False
        self.url = target.url([] if target.combined else [name])[0]
        self.display_url = redact_url(self.url)
        # Written only by the reader thread.
        self.state = ConnectionState.CONNECTING
        self.epoch: object = object()
        self.messages_received = 0
        self.invalid_messages = 0
        self.oversized_messages = 0
        self.retry_attempt = 0  # consecutive failed attempts now (0 once proved healthy)
        self.retry_count = 0  # retries started (waits after a failure), all time
        self.reconnects = 0  # sockets re-opened after the first
        self.attempts = 0  # connection attempts made (each counted by the host budget)
        self.throttled = 0  # attempts that waited for the host budget
        self.resubscribes: dict[str, int] = {}
        self.disconnected_since: float | None = time.monotonic()
        self.opened_at: float | None = None
        self.last_error: ConnectionFailedError | None = None
        self.thread = threading.Thread(
            target=self._run, name=f"wsmanager-reader-{name}", daemon=True
        )

    # -- control, from any thread (never blocks) -------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def carry(self, feeds: Mapping[str, StreamFeed]) -> None:
        """Carry exactly these streams from now on (SUBSCRIBE/UNSUBSCRIBE follow)."""
        self.feeds = dict(feeds)
        self.changed_at = time.monotonic()
        self.wake()

    def rearm_rotation(self, after: float) -> None:
        """Ask for a rotation again ``after`` seconds from now (a handover was abandoned)."""
        self.rotate_at = time.monotonic() + after

    def _upgraded(self) -> bool:
        with self._lock:
            guard = self._guard
        return guard is not None and guard.status == 101  # upgraded: close cleanly

    # -- for the read loop -----------------------------------------------------------------------

    def _set_open(self, is_open: bool) -> None:
        super()._set_open(is_open)
        if not is_open:
            with self._lock:
                self._guard = None

    def proved_healthy(self) -> None:
        self.retry_attempt = 0

    def rotation_timer(self, now: float) -> None:
        """The read loop's timer: ask for the rotation that is due (once; asked again a second
        later if the registry cannot start it now)."""
        if now < self.rotate_at:
            return
        self.rotate_at = float("inf")
        log.info("connection %s (%s): %s; rotating", self.number, self.name, self.rotate_reason)
        if not self._listener.rotation_due(self, self.rotate_reason):
            self.rotate_at = now + 1.0

    def shutdown_announced(self) -> None:
        """The exchange sent ``serverShutdown`` on this socket: hand over at most once per
        socket, and a replacement younger than ``SHUTDOWN_MIN_AGE`` only once it is that old
        (a server that sends it in a loop cannot spend the connection budget)."""
        if self._shutdown_seen:
            return
        self._shutdown_seen = True
        reason = "the exchange announced serverShutdown"
        opened = self.opened_at if self.opened_at is not None else time.monotonic()
        due = opened + SHUTDOWN_MIN_AGE if self.replacement else time.monotonic()
        if due > time.monotonic():
            log.info(
                "connection %s: serverShutdown on a replacement younger than %gs; handing over "
                "when it is that old",
                self.name,
                SHUTDOWN_MIN_AGE,
            )
        self.rotate_reason = reason
        self.rotate_at = min(self.rotate_at, due)
        self.rotation_timer(time.monotonic())

    def stream_refused(self, stream: str, code: int | None, reason: str) -> None:
        log.error("stream %s: refused by the exchange (code %s): %s", stream, code, reason)
        self._listener.stream_refused(self, stream, code, reason)

    def note_resubscribe(self, stream: str) -> None:
        self.resubscribes[stream] = self.resubscribes.get(stream, 0) + 1

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._reconnect_loop()
        except BaseException as exc:  # a bug of ours: report it, never leave a zombie stream
            log.exception("connection %s (%s): reader thread failed", self.number, self.name)
            error = ConnectionFailedError(f"internal error in wsmanager: {exc!r}")
            error.__cause__ = exc
            self.last_error = error
            if not self._stop.is_set():
                self._listener.connection_failed(self, lambda stream: _internal(stream, error))
        finally:
            self._set_state(ConnectionState.DISCONNECTED, socket_open=False)
            self._close_wake()
            self._listener.connection_ended(self)

    def _reconnect_loop(self) -> None:
        while not self._stop.is_set():
            self._set_state(ConnectionState.CONNECTING, socket_open=False)
            acquired, waited = HOST_BUDGETS.acquire(
                self.host_key, self.config.connection_budget, self._stop
            )
            if waited:
                self.throttled += 1
            if not acquired:
                return
            self.attempts += 1
            attempt = self._connect_and_read()
            if self._stop.is_set():
                return
            error = final_error(attempt)
            self.last_error = error
            if self._handle_refused_url(error):
                continue
            self.retry_attempt += 1
            if isinstance(error, HandshakeFailedError) and error.status_code is not None:
                status = error.status_code
                if is_permanent_status(status):
                    log.error("connection %s: handshake rejected with HTTP %s", self.name, status)
                    self._listener.connection_failed(self, _rejected(status, error.headers))
                    return
            limit = self.config.max_retry_attempts
            if limit is not None and self.retry_attempt >= limit:
                failures = self.retry_attempt
                log.error(
                    "connection %s: giving up after %d failed attempts: %s",
                    self.name,
                    failures,
                    error,
                )
                self._listener.connection_failed(self, _exhausted(failures, error))
                return
            delay = self._policy.delay(self.retry_attempt - 1, self._rng)
            pause = retry_after(error)
            if pause is not None:
                HOST_BUDGETS.pause(self.host_key, pause)  # every stream of this host
                delay = max(delay, pause)
            self.retry_count += 1
            log.info(
                "connection %s: attempt failed (%s); retry %d in %.2fs",
                self.name,
                error,
                self.retry_attempt,
                delay,
            )
            if self._stop.wait(delay):
                return

    def _handle_refused_url(self, error: ConnectionFailedError) -> bool:
        """A combined URL answered with HTTP 400: open again naming no stream (SUBSCRIBE then
        names the refused one)."""
        if (
            isinstance(error, HandshakeFailedError)
            and error.status_code == 400
            and self.target.combined
            and self._names_in_url
            and len(self.feeds) > 0
        ):
            log.warning(
                "connection %s: the exchange refused the streams in the URL; subscribing instead",
                self.name,
            )
            self._names_in_url = False
            return True
        return False

    def _connect_and_read(self) -> Attempt:
        self._attempt = attempt = Attempt()
        names = sorted(self.feeds)
        if self.target.combined:
            url, named = self.target.url(names, names_in_url=self._names_in_url)
        else:
            url, named = self.target.url([self.name])
        opened = self._connect(url, attempt)
        if opened is None:
            return attempt
        sock, guard = opened
        with self._lock:
            self._guard = guard
        app = _wsclient.App(
            url,
            loop_factory=lambda app: ReadLoop(self, app, guard),
            on_open=lambda app: self._on_open(app, sock, guard, named),
            on_data=self._on_data,
            on_error=self._on_error,
            on_close=self._on_close,
            on_ping=self._on_ping,
            socket=guard,
            header=self.config.handshake_headers,  # X-MBX-APIKEY (SBE), or nothing
        )
        try:
            self._run_app(app, sock, guard, attempt)
        finally:
            if attempt.opened_at is not None:
                self.disconnected_since = time.monotonic()
        return attempt

    # -- websocket-client callbacks, on the reader thread ----------------------------------------

    def _on_open(
        self, app: _wsclient.App, sock: socket.socket, guard: SocketGuard, named: list[str]
    ) -> None:
        installed = self._install(app, sock, guard, self._attempt)
        if installed is None:
            return
        loop, reader = installed
        now = time.monotonic()
        self._attempt.opened_at = now
        self.opened_at = now
        self.rotate_at = now + self.max_age
        self.rotate_reason = "the connection reached its maximum age"
        self._shutdown_seen = False
        self.epoch = object()
        if self._has_opened:
            self.reconnects += 1
        self._has_opened = True
        self.disconnected_since = None
        loop.opened(reader, named)
        self._set_open(True)  # from now on stop() asks the loop for a clean close
        log.debug("connection %s: connected to %s", self.name, redact_url(app.url))
        self._set_state(ConnectionState.CONNECTED, socket_open=True)

    def _on_ping(self, app: _wsclient.App, data: bytes) -> None:
        self.gate.record(time.monotonic())  # websocket-client has answered with a pong

    def _on_error(self, app: _wsclient.App, error: BaseException) -> None:
        attempt = self._attempt
        if attempt.error is None:
            attempt.error = error
        if isinstance(error, _wsclient.MessageTooBigError):
            self.oversized_messages += 1
            log.warning("connection %s: %s; closing with 1009 and reconnecting", self.name, error)
            with contextlib.suppress(Exception):  # best effort: the peer may be gone
                if app.sock is not None:
                    self.gate.record(time.monotonic())
                    app.sock.send_close(1009, b"message too big")
        # Shut the socket now, so websocket-client's teardown does not wait for a close frame
        # from a peer that may be dead.
        with self._lock:
            sock = self._socket
        shutdown_quietly(sock)
        if not self._stop.is_set():
            log.info("connection %s: connection lost: %s", self.name, convert(error, attempt))

    def _on_close(self, app: _wsclient.App, code: Any, reason: Any) -> None:
        attempt = self._attempt
        if isinstance(code, int) and attempt.close_code is None:
            attempt.close_code = code
            attempt.close_reason = reason if isinstance(reason, str) else ""
        self._set_state(ConnectionState.CONNECTING, socket_open=False)

    def _set_state(self, state: ConnectionState, *, socket_open: bool) -> None:
        self.state = state
        self._listener.connection_state_changed(self, state, socket_open)


def _internal(stream: str, error: ConnectionFailedError) -> WSManagerError:
    return RetriesExhaustedError(stream, 0, error)


def _rejected(status: int, headers: Mapping[str, str]) -> ErrorFactory:
    return lambda stream: HandshakeRejectedError(stream, status, headers)


def _exhausted(attempts: int, error: ConnectionFailedError) -> ErrorFactory:
    return lambda stream: RetriesExhaustedError(stream, attempts, error)
