"""The table of active streams: who subscribes to what, and the manager-wide counters.

One lock (``StreamRegistry._lock``) guards the table, each stream's subscriber tuple and socket
flag, and the counters below. Nothing slow and no user code runs under it: removing a stream only
flags it, shuts its socket down and wakes its threads, which end on their own.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .config import WSManagerConfig
from .connection import StreamConnection
from .dispatch import Ending, MessageDispatcher, Subscription
from .errors import ManagerClosedError, WSManagerError
from .state import ConnectionState, StreamInfo, WSManagerMetrics, aggregate_state

__all__ = ["Stream", "StreamRegistry"]


@dataclass(eq=False)
class Stream:
    """One shared stream: its connection (reader thread), dispatcher and subscribers."""

    name: str
    created_at: float  # epoch seconds
    created_monotonic: float
    connection: StreamConnection
    dispatcher: MessageDispatcher
    subscribers: tuple[Subscription, ...] = ()
    socket_open: bool = False

    def threads(self) -> tuple[threading.Thread, ...]:
        dispatch = self.dispatcher.thread
        return (self.connection.thread,) if dispatch is None else (self.connection.thread, dispatch)

    def idle_seconds(self, now_monotonic: float) -> float:
        last = self.connection.last_message_at
        if last is None:
            return now_monotonic - self.created_monotonic
        return max(0.0, time.time() - last)

    def info(self) -> StreamInfo:
        connection = self.connection
        return StreamInfo(
            name=self.name,
            url=connection.display_url,
            subscribers=len(self.subscribers),
            state=connection.state,
            created_at=self.created_at,
            last_message_at=connection.last_message_at,
            messages_received=connection.messages_received,
            retry_attempt=connection.retry_attempt,
            reconnects=connection.reconnects,
            invalid_messages=connection.binary_frames + self.dispatcher.invalid_messages,
            callback_errors=self.dispatcher.callback_errors,
            dropped_messages=connection.dropped_messages,
            oversized_messages=connection.oversized_messages,
            buffered_messages=len(self.dispatcher.inbox),
        )


@dataclass
class _Totals:
    """Counters folded in from streams whose threads have ended."""

    messages_received: int = 0
    invalid_messages: int = 0
    callback_errors: int = 0
    dropped_messages: int = 0
    oversized_messages: int = 0
    retry_count: int = 0

    def add(self, stream: Stream) -> None:
        info = stream.info()
        self.messages_received += info.messages_received
        self.invalid_messages += info.invalid_messages
        self.callback_errors += info.callback_errors
        self.dropped_messages += info.dropped_messages
        self.oversized_messages += info.oversized_messages
        self.retry_count += stream.connection.retries


@dataclass
class _Counters:
    stream_creations: int = 0
    stream_cleanups: int = 0
    active_connections_hwm: int = 0
    retired: _Totals = field(default_factory=_Totals)


class StreamRegistry:
    """Streams by exact name, reference counted by their subscribers."""

    def __init__(
        self,
        config: WSManagerConfig,
        on_status: Callable[[ConnectionState], None],
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._config = config
        self._on_status = on_status  # called under the lock: must only record and signal
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._streams: dict[str, Stream] = {}
        self._retiring: list[Stream] = []  # removed, threads maybe still ending
        self._closed = False
        self._counters = _Counters()

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if self._closed:
                raise ManagerClosedError("the manager was destroyed; create a new WSManager")
            self._reap_locked()
            stream = self._streams.get(subscription.stream)
            if stream is None:
                stream = self._create_locked(subscription.stream)
            stream.subscribers = (*stream.subscribers, subscription)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if not subscription.active:
                return
            subscription.deactivate()
            stream = self._streams.get(subscription.stream)
            if stream is None:
                return
            stream.subscribers = tuple(s for s in stream.subscribers if s is not subscription)
            if not stream.subscribers:
                self._remove_locked(stream, Ending.UNSUBSCRIBED)

    def _create_locked(self, name: str) -> Stream:
        holder: list[Stream] = []
        dispatcher = MessageDispatcher(
            name, self._config.max_buffered_messages, lambda: holder[0].subscribers
        )
        connection = StreamConnection(
            name, self._config, self, dispatcher.inbox, ssl_context=self._ssl_context
        )
        stream = Stream(
            name=name,
            created_at=time.time(),
            created_monotonic=time.monotonic(),
            connection=connection,
            dispatcher=dispatcher,
        )
        holder.append(stream)
        self._streams[name] = stream
        self._counters.stream_creations += 1
        connection.start()  # the dispatcher starts with the first message
        self._publish_locked()
        return stream

    def _remove_locked(
        self, stream: Stream, ending: Ending, error: Exception | None = None
    ) -> None:
        del self._streams[stream.name]
        subscribers = stream.subscribers
        for subscription in subscribers:
            subscription.deactivate()
        stream.subscribers = ()
        self._retiring.append(stream)
        self._counters.stream_cleanups += 1
        stream.connection.stop()
        stream.dispatcher.finish(ending, subscribers, error)
        self._publish_locked()

    # -- bulk removal ----------------------------------------------------------------------------

    def remove_idle(self, idle_timeout: float) -> int:
        """End every stream without a message for ``idle_timeout`` seconds; tell on_complete."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s in self._streams.values() if s.idle_seconds(now) >= idle_timeout]
            for stream in idle:
                self._remove_locked(stream, Ending.COMPLETED)
        return len(idle)

    def close(self) -> list[threading.Thread]:
        """Refuse new subscriptions, end every stream, and return every thread still to join."""
        with self._lock:
            self._closed = True
            for stream in list(self._streams.values()):
                self._remove_locked(stream, Ending.COMPLETED)
            return [t for s in self._retiring for t in s.threads()]

    # -- ConnectionListener, called on reader threads ----------------------------------------------

    def connection_state_changed(
        self, connection: StreamConnection, state: ConnectionState, socket_open: bool
    ) -> None:
        with self._lock:
            stream = self._find_locked(connection)
            if stream is None:
                return
            stream.socket_open = socket_open
            active = self._active_connections_locked()
            if active > self._counters.active_connections_hwm:
                self._counters.active_connections_hwm = active
            self._publish_locked()

    def connection_failed(self, connection: StreamConnection, error: WSManagerError) -> None:
        with self._lock:
            stream = self._streams.get(connection.stream)
            if stream is not None and stream.connection is connection:
                self._remove_locked(stream, Ending.FAILED, error)

    def _find_locked(self, connection: StreamConnection) -> Stream | None:
        stream = self._streams.get(connection.stream)
        if stream is not None and stream.connection is connection:
            return stream
        for stream in self._retiring:
            if stream.connection is connection:
                return stream
        return None

    # -- reading -------------------------------------------------------------------------------

    def _publish_locked(self) -> None:
        self._on_status(aggregate_state(s.connection.state for s in self._streams.values()))

    def _active_connections_locked(self) -> int:
        return sum(1 for s in self._all_locked() if s.socket_open)

    def _all_locked(self) -> Iterable[Stream]:
        yield from self._streams.values()
        yield from self._retiring

    def _reap_locked(self) -> None:
        """Fold the counters of streams whose threads have ended into the retired totals."""
        still: list[Stream] = []
        for stream in self._retiring:
            if any(t.is_alive() for t in stream.threads()):
                still.append(stream)
            else:
                self._counters.retired.add(stream)
        self._retiring = still

    def state(self) -> ConnectionState:
        with self._lock:
            return aggregate_state(s.connection.state for s in self._streams.values())

    def infos(self) -> list[StreamInfo]:
        with self._lock:
            return [s.info() for s in self._streams.values()]

    def active_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def disconnected_for(self) -> list[tuple[str, float]]:
        """(name, seconds) of each active stream that has no open connection now."""
        now = time.monotonic()
        with self._lock:
            return [
                (s.name, now - since)
                for s in self._streams.values()
                if (since := s.connection.disconnected_since) is not None
            ]

    def metrics(self) -> WSManagerMetrics:
        with self._lock:
            self._reap_locked()
            totals = _Totals(**vars(self._counters.retired))
            for stream in self._all_locked():
                totals.add(stream)
            return WSManagerMetrics(
                active_connections=self._active_connections_locked(),
                active_streams=len(self._streams),
                subscribers=sum(len(s.subscribers) for s in self._streams.values()),
                retry_count=totals.retry_count,
                stream_creations=self._counters.stream_creations,
                stream_cleanups=self._counters.stream_cleanups,
                active_connections_hwm=self._counters.active_connections_hwm,
                messages_received=totals.messages_received,
                invalid_messages=totals.invalid_messages,
                callback_errors=totals.callback_errors,
                dropped_messages=totals.dropped_messages,
                oversized_messages=totals.oversized_messages,
            )
