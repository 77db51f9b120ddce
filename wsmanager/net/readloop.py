"""The read loop of one open connection: what runs on its reader thread while the socket is open.

``WebSocketApp.run_forever`` calls :meth:`ReadLoop.read` (we are its dispatcher, see
:mod:`wsmanager.net._wsclient`). The loop:

- reads whatever the socket has into the frame reader and hands websocket-client one whole
  message at a time, so it never blocks inside a frame that trickles in;
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

import itertools
import json
import logging
import select
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import WSManagerConfig
from ..core.delivery import StreamFeed
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

    def rotation_due(self, reason: str) -> None: ...

    def stream_refused(self, stream: str, code: int | None, reason: str) -> None: ...

    def note_resubscribe(self, stream: str) -> None: ...


__all__ = ["ReadLoop"]

log = logging.getLogger("wsmanager")

MAX_PARAMS_PER_REQUEST = 100  # streams named in one SUBSCRIBE/UNSUBSCRIBE
# Subscribe calls that come in a burst share one message: a request waits until the streams
# have not changed for SETTLE seconds (at most MAX_SETTLE after the first change it waits for).
SETTLE = 0.05
MAX_SETTLE = 0.5
_BURST = 64  # messages handled between two looks at the timers, in a flood
_request_ids = itertools.count(1)
_READ_EVENTS = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR


@dataclass
class _Request:
    method: str
    streams: tuple[str, ...]
    sent_at: float
    individual: bool = False


@dataclass
class _Subscriptions:
    """What the exchange carries on this socket, and what we asked for. Reader thread only."""

    carried: set[str] = field(default_factory=set)
    since: dict[str, float] = field(default_factory=dict)  # when each became carried
    pending: dict[int, _Request] = field(default_factory=dict)
    individual: list[str] = field(default_factory=list)  # to retry one per request
    resubscribing: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    version: int = 0  # bumped on every change of the above (caches _has_work)

    def in_flight(self, method: str) -> set[str]:
        return {s for r in self.pending.values() if r.method == method for s in r.streams}


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
        self.subscriptions = _Subscriptions()
        self.opened_at = 0.0
        self.last_frame_at = 0.0
        self.ping_sent_at: float | None = None
        self.next_ping = 0.0
        self.proved = False
        self.rotation_asked = False
        self.next_stale_check = 0.0
        self.closing = False
        self.failure: BaseException | None = None  # raised by the loop at its next turn
        self.work_since: float | None = None  # when requests became due (for MAX_SETTLE)
        self._work_key: tuple[float, int] | None = None
        self._work = False

    # -- set-up, from on_open --------------------------------------------------------------------

    def opened(self, reader: _wsclient.FastFrameBuffer | None, named: list[str]) -> None:
        now = time.monotonic()
        self.reader = reader
        self.opened_at = self.last_frame_at = now
        self.next_ping = now + self._config.ping_interval
        self.next_stale_check = now + (self._config.stale_after or 0.0)
        self.subscriptions.carried = set(named)
        self.subscriptions.since = dict.fromkeys(named, now)
        self.subscriptions.version += 1

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
                if reader is not None and reader.ready():
                    for _burst in range(_BURST):
                        if not self._handle(read_callback):
                            return
                        if not reader.ready():
                            break
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
                    if (readable or self.guard.pending()) and reader.feed() < 0:
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
        for request_id, request in self.subscriptions.pending.items():
            if now - request.sent_at > config.handshake_timeout:
                raise ConnectionLostError(
                    f"the exchange did not answer {request.method} (id {request_id}) within "
                    f"handshake_timeout ({config.handshake_timeout:g}s)"
                )
        if not self.rotation_asked and now - self.opened_at >= connection.max_age:
            self.rotation_asked = True
            connection.rotation_due("the connection reached its maximum age")
        if config.stale_after is not None and now >= self.next_stale_check:
            self.next_stale_check = now + min(config.stale_after, 1.0)
            self._check_stale(now, config.stale_after)

    def _next_wakeup(self, now: float) -> float:
        wakeups = [self.next_ping, now + 1.0]
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
            request = self._next_request(now)
            if request is None:
                return
            request_id = next(_request_ids)
            self.subscriptions.pending[request_id] = request
            self.subscriptions.version += 1
            text = json.dumps(
                {"method": request.method, "params": list(request.streams), "id": request_id}
            )
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

    def _wanted(self) -> set[str]:
        return set(self.connection.feeds)

    def _has_work(self) -> bool:
        """Requests to send; computed again only when the streams or the requests changed."""
        if not self.connection.target.combined:
            return False
        subs = self.subscriptions
        key = (self.connection.changed_at, subs.version)
        if key != self._work_key:
            wanted = self._wanted() - subs.refused
            self._work_key = key
            self._work = bool(subs.individual) or bool(
                wanted - subs.carried - subs.in_flight("SUBSCRIBE") or self._leaving(wanted)
            )
        return self._work

    def _leaving(self, wanted: set[str]) -> set[str]:
        """Carried streams to unsubscribe: not wanted, or stale (to subscribe again after)."""
        subs = self.subscriptions
        return (subs.carried - wanted | subs.carried & subs.resubscribing) - subs.in_flight(
            "UNSUBSCRIBE"
        )

    def _next_request(self, now: float) -> _Request | None:
        subs = self.subscriptions
        wanted = self._wanted() - subs.refused
        leaving = sorted(self._leaving(wanted))
        if leaving:
            return _Request("UNSUBSCRIBE", tuple(leaving[:MAX_PARAMS_PER_REQUEST]), now)
        if subs.individual:
            return _Request("SUBSCRIBE", (subs.individual.pop(0),), now, individual=True)
        joining = sorted(wanted - subs.carried - subs.in_flight("SUBSCRIBE"))
        if joining:
            return _Request("SUBSCRIBE", tuple(joining[:MAX_PARAMS_PER_REQUEST]), now)
        return None

    # -- the exchange's answers (from on_data, on this thread) -----------------------------------

    def answer(self, message: dict[str, Any]) -> None:
        request = self.subscriptions.pending.pop(message.get("id"), None)  # type: ignore[arg-type]
        if request is None:
            log.debug("connection %s: an answer to no request: %r", self.connection.number, message)
            return
        subs = self.subscriptions
        subs.version += 1
        error = message.get("error")
        if error is None:
            now = time.monotonic()
            if request.method == "SUBSCRIBE":
                subs.carried.update(request.streams)
                subs.since.update(dict.fromkeys(request.streams, now))
            else:
                subs.carried.difference_update(request.streams)
                subs.resubscribing.difference_update(request.streams)
            return
        code = error.get("code") if isinstance(error, dict) else None
        reason = str(error.get("msg", error) if isinstance(error, dict) else error)
        if request.method != "SUBSCRIBE":
            log.warning("connection %s: %s refused: %s", self.connection.number, request, reason)
            subs.carried.difference_update(request.streams)
            return
        if not request.individual:
            log.info(
                "connection %s: SUBSCRIBE of %d stream(s) refused (%s); retrying one by one",
                self.connection.number,
                len(request.streams),
                reason,
            )
            subs.individual.extend(request.streams)
            return
        (stream,) = request.streams
        subs.refused.add(stream)
        self.connection.stream_refused(stream, code if isinstance(code, int) else None, reason)

    # -- stale streams ---------------------------------------------------------------------------

    def _check_stale(self, now: float, stale_after: float) -> None:
        if now - self.last_frame_at > stale_after:
            return  # nothing arrives at all: the ping rules judge the connection itself
        subs = self.subscriptions
        feeds = self.connection.feeds
        for name in list(subs.carried):
            feed = feeds.get(name)
            if feed is None or name in subs.resubscribing:
                continue
            last = feed.last_message_monotonic
            since = max(last or 0.0, subs.since.get(name, now))
            if now - since < stale_after:
                continue
            log.warning(
                "stream %s: nothing for %.1fs while the connection is alive; resubscribing",
                name,
                now - since,
            )
            self.connection.note_resubscribe(name)
            if not self.connection.target.combined:
                raise ConnectionLostError(f"stream {name} went silent (stale_after)")
            subs.resubscribing.add(name)
            subs.version += 1
            subs.since[name] = now

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
                    frame = reader.peek()
                    if frame is not None and frame[0] == _wsclient.OPCODE_CLOSE:
                        return
                    try:
                        read_callback()  # a message still on its way; dropped by the feeds
                    except Exception:
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
