"""One shared stream connection: the reader thread, its reconnect loop, and error classification.

This is the only module that talks to websocket-client. Each :class:`StreamConnection` owns one
reader thread which, until stopped, opens a socket (:mod:`wsmanager.transport`), runs
``WebSocketApp.run_forever`` on it without websocket-client's own ``reconnect=``, and after a
failure waits a full-jitter backoff delay on an ``Event`` that :meth:`StreamConnection.stop`
sets, so unsubscribe and destroy cut any wait short.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import websocket

from .backoff import BackoffPolicy
from .config import WSManagerConfig, redact_url
from .dispatch import Inbox
from .errors import HandshakeRejectedError, RetriesExhaustedError, WSManagerError
from .state import ConnectionState
from .transport import ConnectAborted, open_socket, shutdown_quietly

__all__ = [
    "ConnectionListener",
    "MessageTooBigError",
    "StreamConnection",
    "is_permanent_status",
    "parse_retry_after",
]

log = logging.getLogger("wsmanager")

_RETRYABLE_4XX = frozenset({408, 418, 429})


def is_permanent_status(status: int) -> bool:
    """A handshake answered with this HTTP status will not succeed by retrying."""
    return 400 <= status < 500 and status not in _RETRYABLE_4XX


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class MessageTooBigError(websocket.WebSocketProtocolException):
    """A frame, or a fragmented message, longer than ``max_message_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds max_message_size ({limit})")
        self.size = size
        self.limit = limit


_READ_SIZE = 256 * 1024  # bytes per recv(): fewer, larger reads per wake-up (and GIL hand-off)
_COMPACT_AT = 1024 * 1024  # drop consumed bytes from the read buffer past this offset


class _FastFrameBuffer(websocket._abnf.frame_buffer):  # type: ignore[misc]
    """websocket-client's frame reader, replaced: one large ``recv`` feeds many frames, parsed
    from our own buffer, and a frame over the size limit is refused by its header, before its
    payload is read. Works with :class:`_BufferedDispatcher`, which asks :meth:`has_frame`."""

    def __init__(self, recv: Any, limit: int) -> None:
        super().__init__(recv, skip_utf8_validation=True)
        self._limit = limit
        self._buffer = bytearray()
        self._pos = 0

    def has_frame(self) -> bool:
        """A whole frame is already buffered (so select() would wrongly say "nothing to read")."""
        buffer, pos = self._buffer, self._pos
        available = len(buffer) - pos
        if available < 2:
            return False
        length = buffer[pos + 1] & 0x7F
        header = 2
        if length == 126:
            if available < 4:
                return False
            length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
            header = 4
        elif length == 127:
            if available < 10:
                return False
            length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
            header = 10
        if buffer[pos + 1] & 0x80:
            header += 4
        return available >= header + length or length > self._limit

    def _fill(self, needed: int) -> None:
        buffer = self._buffer
        while len(buffer) - self._pos < needed:
            buffer += self.recv(_READ_SIZE)

    def recv_frame(self) -> Any:
        with self.lock:
            self._fill(2)
            buffer, pos = self._buffer, self._pos
            b1, b2 = buffer[pos], buffer[pos + 1]
            length = b2 & 0x7F
            header = 2
            if length == 126:
                self._fill(4)
                buffer = self._buffer
                length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
                header = 4
            elif length == 127:
                self._fill(10)
                buffer = self._buffer
                length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                header = 10
            if length > self._limit:
                raise MessageTooBigError(length, self._limit)
            masked = b2 & 0x80
            if masked:
                header += 4
            self._fill(header + length)
            buffer = self._buffer
            payload = bytes(buffer[pos + header : pos + header + length])
            if masked:
                key = bytes(buffer[pos + header - 4 : pos + header])
                payload = websocket.ABNF.mask(key, payload)
            end = pos + header + length
            if end == len(buffer):
                buffer.clear()
                end = 0
            elif end > _COMPACT_AT:
                del buffer[:end]
                end = 0
            self._pos = end
        frame = websocket.ABNF(
            b1 >> 7 & 1, b1 >> 6 & 1, b1 >> 5 & 1, b1 >> 4 & 1, b1 & 0x0F, masked, payload
        )
        frame.validate(skip_utf8_validation=True)
        return frame


class _BufferedDispatcher(websocket._dispatcher.DispatcherBase):  # type: ignore[misc]
    """websocket-client's read loop, aware of frames already in our buffer (and in TLS's), and
    sending the keep-alive pings itself, so a connection needs no ping thread of its own."""

    def __init__(self, app: Any, ping_timeout: float, ping_interval: float) -> None:
        super().__init__(app, ping_timeout)
        self.ping_interval = ping_interval
        self.pong_wait = ping_timeout

    def read(self, sock: Any, read_callback: Any, check_callback: Any) -> None:
        app = self.app
        ws = app.sock
        if ws is None or ws.sock is None:
            return
        raw = ws.sock
        buffered = getattr(ws.frame_buffer, "has_frame", None)
        tls_pending = getattr(raw, "pending", None)
        interval = self.ping_interval
        next_ping = time.monotonic() + interval
        poller = select.poll()  # lighter than a selector object (no epoll fd per connection)
        poller.register(raw, select.POLLIN)
        while app.keep_running:
            now = time.monotonic()
            if now >= next_ping:
                next_ping = now + interval
                app.last_ping_tm = time.time()  # what websocket-client's check() reads
                with contextlib.suppress(Exception):  # a dead socket shows in the read
                    ws.ping()
            wait_ms = 1000 * min(self.pong_wait, max(0.0, next_ping - now))
            readable = (
                (buffered is not None and buffered())
                or (tls_pending is not None and tls_pending())
                or poller.poll(wait_ms)
            )
            if readable and not read_callback():
                break
            check_callback()  # raises when a ping went unanswered for ping_timeout


class _App(websocket.WebSocketApp):  # type: ignore[misc]
    """``WebSocketApp`` with our read loop (its one documented-by-code extension point)."""

    keepalive_interval: float = 20.0

    def create_dispatcher(
        self,
        ping_timeout: float | None,
        dispatcher: Any = None,
        is_ssl: bool = False,
        handleDisconnect: Any = None,
    ) -> Any:
        return _BufferedDispatcher(self, ping_timeout or 10, self.keepalive_interval)


class _LimitedContinuation(websocket._abnf.continuous_frame):  # type: ignore[misc]
    """Reassembles fragments in a bytearray (linear, not quadratic) up to the size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(fire_cont_frame=False, skip_utf8_validation=True)
        self._limit = limit

    def add(self, frame: Any) -> None:
        if self.cont_data:
            if not isinstance(self.cont_data[1], bytearray):  # a second fragment: start joining
                self.cont_data[1] = bytearray(self.cont_data[1])
            self.cont_data[1] += frame.data
        else:
            if frame.opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self.recving_frames = frame.opcode
            self.cont_data = [frame.opcode, frame.data]
        if len(self.cont_data[1]) > self._limit:
            raise MessageTooBigError(len(self.cont_data[1]), self._limit)
        if frame.fin:
            self.recving_frames = None

    def extract(self, frame: Any) -> tuple[int, Any]:
        # websocket-client hands the reassembled message on with the last fragment's opcode
        # (CONT); give it the message's own (TEXT/BINARY) so it is not taken for binary.
        opcode, message = super().extract(frame)
        message.opcode = opcode
        return opcode, message


def _install_limits(app: websocket.WebSocketApp, limit: int) -> None:
    """Swap the size-limited readers into a freshly opened websocket-client connection."""
    ws = app.sock
    if ws is not None:
        ws.frame_buffer = _FastFrameBuffer(ws._recv, limit)
        ws.cont_frame = _LimitedContinuation(limit)


class ConnectionListener(Protocol):
    """What a connection tells its owner. Called on the reader thread, never under its locks."""

    def connection_state_changed(
        self, connection: StreamConnection, state: ConnectionState, socket_open: bool
    ) -> None: ...

    def connection_failed(self, connection: StreamConnection, error: WSManagerError) -> None: ...


@dataclass
class _Attempt:
    """What one run of ``run_forever`` ended with."""

    opened_at: float | None = None  # monotonic
    messages: int = 0
    error: BaseException | None = None


class StreamConnection:
    """The reader thread of one stream. Counters here are written only by that thread."""

    def __init__(
        self,
        stream: str,
        config: WSManagerConfig,
        listener: ConnectionListener,
        inbox: Inbox,
        *,
        ssl_context: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.stream = stream
        self.url = config.stream_url(stream)
        self.display_url = redact_url(self.url)  # for logs and metrics: no credentials
        self._config = config
        self._policy = BackoffPolicy(config.base_retry_delay, config.max_retry_delay)
        self._listener = listener
        self._inbox = inbox
        self._ssl_context = ssl_context
        self._rng = rng  # None: the random module's shared generator (no 2.5 KB per stream)
        self._stop = threading.Event()
        self._socket_lock = threading.Lock()  # guards _socket: handed between reader and stop()
        self._socket: socket.socket | None = None
        self._attempt = _Attempt()
        self._dropping = False
        self._dropped_in_episode = 0
        self._has_opened_before = False
        # Written only by the reader thread.
        self.state = ConnectionState.CONNECTING
        self.messages_received = 0
        self.binary_frames = 0
        self.dropped_messages = 0
        self.oversized_messages = 0
        self.last_message_at: float | None = None
        self.retry_attempt = 0
        self.retries = 0
        self.reconnects = 0
        self.disconnected_since: float | None = time.monotonic()
        self.thread = threading.Thread(
            target=self._run, name=f"wsmanager-reader-{stream}", daemon=True
        )

    # -- control, from any thread -------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Ask the reader thread to end: cuts short a backoff wait, a connect or a read."""
        self._stop.set()
        with self._socket_lock:
            sock = self._socket
        if sock is not None:
            shutdown_quietly(sock)

    # -- the reader thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._set_state(ConnectionState.CONNECTING, socket_open=False)
                attempt = self._connect_and_read()
                if self._stop.is_set():
                    break
                if self._proved_healthy(attempt):
                    self.retry_attempt = 0
                self.retry_attempt += 1
                failures = self.retry_attempt
                error = attempt.error
                status = getattr(error, "status_code", None)
                if (
                    isinstance(error, websocket.WebSocketBadStatusException)
                    and isinstance(status, int)
                    and is_permanent_status(status)
                ):
                    headers = error.resp_headers or {}
                    log.error("stream %s: handshake rejected with HTTP %s", self.stream, status)
                    self._fail(HandshakeRejectedError(self.stream, status, headers))
                    return
                limit = self._config.max_retry_attempts
                if limit is not None and failures >= limit:
                    log.error(
                        "stream %s: giving up after %d failed attempts: %r",
                        self.stream,
                        failures,
                        error,
                    )
                    self._fail(RetriesExhaustedError(self.stream, failures, error))
                    return
                delay = self._policy.delay(failures - 1, self._rng)
                retry_after = self._retry_after(error)
                if retry_after is not None:
                    delay = max(delay, retry_after)
                self.retries += 1
                log.info(
                    "stream %s: connection attempt failed (%r); retry %d in %.2fs",
                    self.stream,
                    error,
                    failures,
                    delay,
                )
                if self._stop.wait(delay):
                    break
        except Exception:  # a bug here must not die silently
            log.exception("stream %s: reader thread crashed", self.stream)
        finally:
            self._set_state(ConnectionState.DISCONNECTED, socket_open=False)

    def _proved_healthy(self, attempt: _Attempt) -> bool:
        if attempt.opened_at is None:
            return False
        lived = time.monotonic() - attempt.opened_at
        return attempt.messages > 0 or lived >= self._config.ping_interval

    def _retry_after(self, error: BaseException | None) -> float | None:
        if isinstance(error, websocket.WebSocketBadStatusException):
            return parse_retry_after((error.resp_headers or {}).get("retry-after"))
        return None

    def _fail(self, error: WSManagerError) -> None:
        self._listener.connection_failed(self, error)

    def _connect_and_read(self) -> _Attempt:
        self._attempt = attempt = _Attempt()
        try:
            sock = open_socket(
                self.url,
                timeout=self._config.handshake_timeout,
                stop=self._stop,
                ssl_context=self._ssl_context,
            )
        except ConnectAborted:
            return attempt
        except (OSError, ssl.SSLError) as exc:
            attempt.error = exc
            return attempt
        with self._socket_lock:
            self._socket = sock
        if self._stop.is_set():  # stop() ran before the socket was published
            shutdown_quietly(sock)
        app = _App(
            self.url,
            on_open=self._on_open,
            on_data=self._on_data,
            on_error=self._on_error,
            on_close=self._on_close,
            socket=sock,
        )
        app.keepalive_interval = self._config.ping_interval
        try:
            app.run_forever(
                ping_interval=0,  # our read loop pings (one thread per connection, not two)
                ping_timeout=self._config.ping_timeout,
                skip_utf8_validation=True,  # validated once, in C, when the frame is decoded
            )
        finally:
            with self._socket_lock:
                self._socket = None
            sock.close()
            if attempt.opened_at is not None:
                self.disconnected_since = time.monotonic()
        return attempt

    # -- websocket-client callbacks, on the reader thread ----------------------------------------

    def _on_open(self, app: websocket.WebSocketApp) -> None:
        _install_limits(app, self._config.max_message_size)
        if self._attempt.opened_at is None:
            self._attempt.opened_at = time.monotonic()
        if self._has_opened_before:
            self.reconnects += 1
        self._has_opened_before = True
        self.disconnected_since = None
        # While reading, the same timeout bounds a frame that stalls half-way.
        if self._socket is not None:  # set by this thread; no lock needed to read it here
            self._socket.settimeout(self._config.handshake_timeout)
        log.debug("stream %s: connected to %s", self.stream, self.display_url)
        self._set_state(ConnectionState.CONNECTED, socket_open=True)

    def _on_data(self, app: websocket.WebSocketApp, data: bytes, opcode: int, fin: bool) -> None:
        self.messages_received += 1
        self._attempt.messages += 1
        if self._attempt.messages == 1:
            self.retry_attempt = 0  # a message proves the connection healthy
        self.last_message_at = time.time()
        if opcode == websocket.ABNF.OPCODE_TEXT:
            if self._inbox.put(data):
                self.dropped_messages += 1
                self._dropped_in_episode += 1
                if not self._dropping:
                    self._dropping = True
                    log.warning(
                        "stream %s: callbacks are slower than the stream; dropping the oldest "
                        "buffered messages (buffer of %d)",
                        self.stream,
                        self._config.max_buffered_messages,
                    )
            elif self._dropping and len(self._inbox) * 2 < self._config.max_buffered_messages:
                self._dropping = False
                log.warning(
                    "stream %s: caught up after dropping %d message(s)",
                    self.stream,
                    self._dropped_in_episode,
                )
                self._dropped_in_episode = 0
        else:
            self.binary_frames += 1
            log.warning("stream %s: skipped a binary frame of %d bytes", self.stream, len(data))

    def _on_error(self, app: websocket.WebSocketApp, error: BaseException) -> None:
        if self._attempt.error is None:
            self._attempt.error = error
        if isinstance(error, MessageTooBigError):
            self.oversized_messages += 1
            log.warning("stream %s: %s; closing with 1009 and reconnecting", self.stream, error)
            with contextlib.suppress(Exception):  # best effort: the peer may be gone
                if app.sock is not None:
                    app.sock.send_close(1009, b"message too big")
        # Shut the socket now, so websocket-client's teardown does not wait for a close
        # frame from a peer that may be dead.
        with self._socket_lock:
            sock = self._socket
        if sock is not None:
            shutdown_quietly(sock)
        if not self._stop.is_set():
            log.info("stream %s: connection lost: %r", self.stream, error)

    def _on_close(self, app: websocket.WebSocketApp, code: Any, reason: Any) -> None:
        self._set_state(ConnectionState.CONNECTING, socket_open=False)

    def _set_state(self, state: ConnectionState, *, socket_open: bool) -> None:
        self.state = state
        self._listener.connection_state_changed(self, state, socket_open)
