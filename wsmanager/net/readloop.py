"""The read loop of one open connection: what runs on its reader thread while the socket is open.

``WebSocketApp.run_forever`` calls :meth:`ReadLoop.read` (we are its dispatcher, see
:mod:`wsmanager.net._wsclient`). The loop:

- reads what the socket has into the frame reader (a few MiB at most), parses every whole frame
  in one pass and hands the messages to the connection together (:meth:`ReadLoop._batch`),
  so it never blocks inside a frame that trickles in; a close frame goes to websocket-client;
- answers the exchange's pings through the gate (the latest ping, as soon as the window allows);
  time spent waiting for a full stream buffer (back-pressure) is not counted as the exchange's
  silence;
- sends the keep-alive pings and treats a ping without any frame back within ``ping_timeout``
  as a dead link (also when a frame in progress holds the pong back);
- sends ``SUBSCRIBE``/``UNSUBSCRIBE`` for the streams the connection should carry, batched, and
  never more client messages (pings, pongs, control messages, close) than the connection's
  :class:`~wsmanager.net.limits.MessageGate` allows; handles the exchange's answers;
- resubscribes stale streams, asks for a rotation when the connection is old, and on ``stop``
  closes with a close frame 1000 and a short wait for the exchange's.

Every way out is an exception (:class:`~wsmanager.errors.ConnectionLostError`) or a clean close;
websocket-client's ``run_forever`` turns either into ``on_error``/``on_close`` and a teardown.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import select
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from ..config import WSManagerConfig
from ..core.delivery import StreamFeed
from ..core.flow import Pressure
from ..core.subscriptions import SubscriptionBook
from ..core.targets import Target
from ..errors import ConnectionLostError
from . import _wsclient
from .guard import SocketGuard
from .limits import MessageGate


class LoopOwner(Protocol):
    """What the read loop needs of its :class:`~wsmanager.net.connection.Connection`."""

    number: int
    config: WSManagerConfig
    target: Target
    gate: MessageGate
    feeds: Mapping[str, StreamFeed]
    healthy_after: float
    max_age: float
    closed_by_us: bool
    changed_at: float

    def stopping(self) -> bool: ...

    def wake_fd(self) -> int: ...

    def drain_wake(self) -> None: ...

    def proved_healthy(self) -> None: ...

    def rotation_timer(self, now: float) -> None: ...

    def stream_refused(self, stream: str, code: int | None, reason: str) -> None: ...

    def note_resubscribe(self, stream: str) -> None: ...

    def deliver(self, messages: list[bytes], opcode: int, pressure: Pressure) -> None: ...


__all__ = ["ReadLoop"]

log = logging.getLogger("wsmanager")

# Subscribe calls that come in a burst share one message: a request waits until the streams
# have not changed for SETTLE seconds (at most MAX_SETTLE after the first change it waits for).
SETTLE = 0.05
MAX_SETTLE = 0.5
_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


class ReadLoop:
    """websocket-client's dispatcher for one socket; created by ``run_forever``."""

    def __init__(self, connection: LoopOwner, app: Any, guard: SocketGuard) -> None:
        self.connection = connection
        self.app = app
        self.guard = guard
        config = connection.config
        self._config = config
        self.reader: _wsclient.FastFrameBuffer | None = None
        self.gate: MessageGate = connection.gate
        self.subscriptions = SubscriptionBook()
        self._seen_change: float | None = None  # connection.changed_at last given to it
        self.opened_at = 0.0
        self.last_frame_at = 0.0
        self.ping_sent_at: float | None = None
        self.next_ping = 0.0
        self.proved = False
        self.next_stale_check = 0.0
        self.closing = False
        self.failure: BaseException | None = None  # raised by the loop at its next turn
        self.work_since: float | None = None  # when requests became due (for MAX_SETTLE)
        self.pong_due: bytes | None = None  # a ping's payload, answered through the gate
        self.pressure = Pressure(connection.config.backpressure, connection.stopping)

    # -- set-up, from on_open --------------------------------------------------------------------

    def opened(self, reader: _wsclient.FastFrameBuffer | None, named: list[str]) -> None:
        now = time.monotonic()
        self.reader = reader
        self.opened_at = self.last_frame_at = now
        self.next_ping = now + self._config.ping_interval
        self.next_stale_check = now + (self._config.stale_after or 0.0)
        self.subscriptions.opened(named, now)
        self._seen_change = None

    # -- websocket-client's dispatcher interface -------------------------------------------------

    def read(self, sock: Any, read_callback: Callable[[], Any], *_: Any) -> None:
        connection = self.connection
        poller = select.poll()
        poller.register(self.guard.fileno(), _READ_EVENTS)
        wake = connection.wake_fd()
        poller.register(wake, select.POLLIN)
        reader = self.reader
        try:
            while self.app.keep_running:
                if reader is not None and reader.ready() and not self._batch(reader, read_callback):
                    return
                now = time.monotonic()
                if self.failure is not None:
                    raise self.failure
                if connection.stopping():
                    self._close_cleanly(read_callback)
                    return
                self._timers(now)
                self._send_due(now)
                timeout = 0.0 if self._buffered() else self._next_wakeup(time.monotonic())
                readable = False
                for fd, _event in poller.poll(int(timeout * 1000) + (1 if timeout else 0)):
                    if fd == wake:
                        connection.drain_wake()
                    else:
                        readable = True
                if reader is not None:
                    if (
                        (readable or self.guard.pending())
                        and not reader.full()
                        and reader.feed() < 0
                    ):
                        raise ConnectionLostError(
                            "the exchange closed the connection without a close frame"
                        )
                elif readable or self._buffered():
                    self.guard.read_deadline = now + self._dead_after()
                    try:
                        if not self._handle(read_callback):
                            return
                    finally:
                        self.guard.read_deadline = None
        finally:
            poller.unregister(wake)

    def _batch(self, reader: _wsclient.FastFrameBuffer, read_callback: Callable[[], Any]) -> bool:
        """Every whole frame buffered, parsed in one pass and delivered together (text and
        binary messages in separate calls); a close frame goes to websocket-client. False when
        the connection ended."""
        messages: list[bytes] = []
        error: Exception | None = None
        try:
            parsed = reader.parse(messages)
        except Exception as exc:  # too big, or a frame RFC 6455 forbids: after the good ones
            error, parsed = exc, 1
        if parsed:
            self.last_frame_at = time.monotonic()
        if reader.ping is not None:
            self.pong_due, reader.ping = reader.ping, None
        if messages:
            pressure = self.pressure
            before = pressure.waited
            self.connection.deliver(messages, reader.opcode, pressure)
            pressure.batch_done()
            if pressure.waited > before:
                self._paused(pressure.waited - before)
        if error is not None:
            raise error
        if reader.close_next:
            return self._handle(read_callback)
        return True

    def _paused(self, seconds: float) -> None:
        """The reader waited for full buffers: that time is not the peer's silence."""
        if self.ping_sent_at is not None:
            self.ping_sent_at += seconds
        pending = self.subscriptions.pending
        for request_id, request in pending.items():
            pending[request_id] = dataclasses.replace(request, sent_at=request.sent_at + seconds)

    def _buffered(self) -> bool:
        """Bytes we hold that poll() cannot see (our frame buffer, TLS, the handshake's tail)."""
        if self.reader is not None:
            return self.reader.ready()
        return bool(self.guard.leftover) or self.guard.pending() > 0

    def send(self, sock: Any, data: str | bytes) -> int:
        """websocket-client (1.9) sends through its dispatcher: straight to the socket."""
        return int(sock.send(data.encode("utf-8") if isinstance(data, str) else data))

    def _handle(self, read_callback: Callable[[], Any]) -> bool:
        """One message (or control frame) through websocket-client; False when it ended."""
        result = read_callback()
        self.last_frame_at = time.monotonic()
        return bool(result) and self.app.keep_running

    def _dead_after(self) -> float:
        return self._config.ping_interval + self._config.ping_timeout

    # -- timers ----------------------------------------------------------------------------------

    def _timers(self, now: float) -> None:
        config = self._config
        connection = self.connection
        if not self.proved and now - self.opened_at >= connection.healthy_after:
            self.proved = True
            connection.proved_healthy()
        if self.ping_sent_at is not None:
            if self.last_frame_at >= self.ping_sent_at:
                self.ping_sent_at = None
            elif now - self.ping_sent_at > config.ping_timeout:
                raise ConnectionLostError(
                    f"no answer to a ping within ping_timeout ({config.ping_timeout:g}s)"
                )
        overdue = self.subscriptions.overdue(now, config.handshake_timeout)
        if overdue is not None:
            raise ConnectionLostError(
                f"the exchange did not answer {overdue.method} (id {overdue.id}) within "
                f"handshake_timeout ({config.handshake_timeout:g}s)"
            )
        connection.rotation_timer(now)
        if config.stale_after is not None and now >= self.next_stale_check:
            self.next_stale_check = now + min(config.stale_after, 1.0)
            self._check_stale(now, config.stale_after)

    def _next_wakeup(self, now: float) -> float:
        wakeups = [self.next_ping, now + 1.0]
        if self.pong_due is not None:
            wakeups.append(now + self.gate.wait_time(now))
        if self.ping_sent_at is not None:
            wakeups.append(self.ping_sent_at + self._config.ping_timeout)
        if not self.proved:
            wakeups.append(self.opened_at + self.connection.healthy_after)
        if self._has_work():
            wait = self.gate.wait_time(now)
            if wait > 0:
                wakeups.append(now + wait)
            if self.work_since is not None:
                wakeups.append(
                    min(self.connection.changed_at + SETTLE, self.work_since + MAX_SETTLE)
                )
        return max(0.0, min(wakeups) - now)

    # -- sending ---------------------------------------------------------------------------------

    def _send_due(self, now: float) -> None:
        if self.pong_due is not None:
            if self.gate.wait_time(now) > 0:
                return  # the pong goes first, as soon as the window allows
            payload, self.pong_due = self.pong_due, None
            self._send(lambda ws: ws.pong(payload), now)
        if now >= self.next_ping:
            if self.gate.wait_time(now) > 0:
                return  # the ping goes first, as soon as the window allows
            self.next_ping = now + self._config.ping_interval
            self._send(lambda ws: ws.ping(), now)
            if self.ping_sent_at is None:
                self.ping_sent_at = now
        if not self.connection.target.combined:
            return
        if not self._settled(now):
            return
        while self._has_work() and self.gate.wait_time(now) == 0:
            request = self.subscriptions.next_request(now)
            if request is None:
                return
            text = json.dumps(request.message(), ensure_ascii=False)
            log.debug("connection %s: %s", self.connection.number, text)
            self._send_text(text, now)

    def _settled(self, now: float) -> bool:
        """No request yet while subscribe calls are still arriving (a burst, one message)."""
        if not self._has_work():
            self.work_since = None
            return True
        if self.work_since is None:
            self.work_since = now
        return now - self.connection.changed_at >= SETTLE or now - self.work_since >= MAX_SETTLE

    def _send(self, action: Callable[[Any], object], now: float) -> None:
        ws = self.app.sock
        if ws is None:
            return
        self.gate.record(now)
        try:
            action(ws)
        except Exception as exc:  # the read side sees the dead socket too; report it here
            raise ConnectionLostError(f"could not send to the exchange: {exc}") from exc

    def _send_text(self, text: str, now: float) -> None:
        self._send(lambda ws: ws.send(text), now)

    def _sync_wanted(self) -> None:
        """Tell the bookkeeping what the connection should carry, when that changed."""
        changed_at = self.connection.changed_at
        if changed_at != self._seen_change:
            self._seen_change = changed_at
            self.subscriptions.want(self.connection.feeds)

    def _has_work(self) -> bool:
        """Requests to send (the bookkeeping caches the answer until something changes)."""
        if not self.connection.target.combined:
            return False
        self._sync_wanted()
        return self.subscriptions.has_work()

    # -- the exchange's answers (from on_data, on this thread) -----------------------------------

    def answer(self, message: dict[str, Any]) -> None:
        number = self.connection.number
        error = message.get("error")
        try:
            refusal = self.subscriptions.answer(message.get("id"), error, time.monotonic())
        except KeyError:
            log.debug("connection %s: an answer to no request: %r", number, message)
            return
        if error is not None and refusal is None:
            log.info(
                "connection %s: a request was refused (%s); retrying stream by stream "
                "where it was a SUBSCRIBE",
                number,
                error,
            )
        if refusal is not None:
            self.connection.stream_refused(refusal.stream, refusal.code, refusal.reason)

    # -- stale streams ---------------------------------------------------------------------------

    def _check_stale(self, now: float, stale_after: float) -> None:
        if now - self.last_frame_at > stale_after:
            return  # nothing arrives at all: the ping rules judge the connection itself
        self._sync_wanted()
        feeds = self.connection.feeds

        def last_message(name: str) -> float | None:
            feed = feeds.get(name)
            return None if feed is None else feed.last_message_monotonic

        for name in self.subscriptions.stale(now, stale_after, last_message):
            log.warning(
                "stream %s: nothing for %gs or more while the connection is alive; resubscribing",
                name,
                stale_after,
            )
            self.connection.note_resubscribe(name)
            if not self.connection.target.combined:
                raise ConnectionLostError(f"stream {name} went silent (stale_after)")

    # -- closing ---------------------------------------------------------------------------------

    def _close_cleanly(self, read_callback: Callable[[], Any]) -> None:
        """Close frame 1000, then wait briefly for the exchange's close frame."""
        if self.closing:
            return
        self.closing = True
        deadline = time.monotonic() + self._config.close_timeout
        while (wait := self.gate.wait_time(time.monotonic())) > 0:
            if time.monotonic() + wait > deadline:
                break
            time.sleep(wait)
        ws = self.app.sock
        if ws is None:
            return
        try:
            self.gate.record(time.monotonic())
            ws.send_close(1000, b"")
        except Exception:
            return
        self.connection.closed_by_us = True
        reader = self.reader
        poller = select.poll()
        poller.register(self.guard.fileno(), _READ_EVENTS)
        while (remaining := deadline - time.monotonic()) > 0:
            if reader is not None:
                while reader.ready():
                    try:
                        reader.parse([])  # messages still on their way: not delivered
                    except Exception:
                        return
                    if reader.close_next:
                        return
                if not poller.poll(int(remaining * 1000) + 1):
                    return
                try:
                    if reader.feed() < 0:
                        return
                except OSError:
                    return
            else:
                if not poller.poll(int(remaining * 1000) + 1):
                    return
                try:
                    if not read_callback():
                        return
                except Exception:
                    return
