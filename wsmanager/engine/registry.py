"""The table of streams and of the connection groups that carry them, and the manager's counters.

A :class:`~wsmanager.engine.groups.Group` is up to ``streams_per_connection`` streams that share one
callback thread (:class:`~wsmanager.core.delivery.DeliveryLoop`) and are carried by one
:class:`~wsmanager.net.connection.Connection` — by two during a handover (a planned rotation, or the
exchange's ``serverShutdown``), whose phases and legal moves are one table in
:mod:`wsmanager.engine.handover`: what the connections report becomes an event of that table,
and the registry carries out the outcome (switch, promote, abandon).

One lock (``StreamRegistry._lock``) guards the table, the groups, each stream's subscriber tuple
and the counters below. Nothing slow and no user code runs under it: ending a stream only flags
it and wakes its threads, which end on their own. Lock order: registry -> delivery loop.
"""

from __future__ import annotations

import itertools
import logging
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable

from ..config import WSManagerConfig
from ..core._locks import make_lock
from ..core.delivery import Backfill, DeliveryLoop, Ending, GapCallback, StreamFeed, Subscription
from ..core.sequence import rule_for
from ..core.state import ConnectionState, StreamInfo, WSManagerMetrics, aggregate_state
from ..core.targets import Router, Target
from ..errors import ManagerClosedError, StreamRejectedError, WSManagerError
from ..net.connection import Connection, ErrorFactory
from .groups import Counters, Group, Stream, Totals
from .handover import Event, Handover, Phase
from .report import manager_metrics, stream_info

__all__ = ["StreamRegistry"]

log = logging.getLogger("wsmanager")


class StreamRegistry:
    """Streams by exact name, reference counted by their subscribers, in connection groups."""

    def __init__(
        self,
        config: WSManagerConfig,
        on_status: Callable[[ConnectionState], None],
        gap_listeners: Callable[[], tuple[GapCallback, ...]],
        *,
        ssl_context: ssl.SSLContext | None = None,
        backfill_for: Callable[[str], Backfill | None] | None = None,
        on_handover: Callable[[], None] = lambda: None,
        router: Router | None = None,
    ) -> None:
        self._config = config
        self._router = router or Router(config)  # each stream's target (its route's, if routed)
        self._on_status = on_status  # called under the lock: must only record and signal
        self._gap_listeners = gap_listeners
        self._ssl_context = ssl_context
        self._backfill_for = backfill_for
        self._on_handover = on_handover  # called under the lock: must only signal
        self._lock = make_lock("registry")
        self._streams: dict[str, Stream] = {}
        self._groups: list[Group] = []
        self._group_of: dict[Connection, Group] = {}
        self._retiring_connections: list[Connection] = []
        self._retiring_loops: list[DeliveryLoop] = []
        self._retiring_feeds: list[StreamFeed] = []
        self._numbers = itertools.count(1)
        self._closed = False
        self._counters = Counters()
        self._failures: deque[tuple[str, str, float]] = deque(maxlen=1000)

    @property
    def combined(self) -> bool:
        return self._router.combined

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if self._closed:
                raise ManagerClosedError("the manager was destroyed; create a new WSManager")
            self._reap_locked()
            stream = self._streams.get(subscription.stream)
            if stream is None:
                stream = self._create_locked(subscription.stream)
            feed = stream.feed
            feed.subscribers = (*feed.subscribers, subscription)
            if subscription.backfill and feed.backfill is None and self._backfill_for is not None:
                feed.backfill = self._backfill_for(stream.name)

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if not subscription.active:
                return
            subscription.deactivate()
            stream = self._streams.get(subscription.stream)
            if stream is None:
                return
            feed = stream.feed
            feed.subscribers = tuple(s for s in feed.subscribers if s is not subscription)
            if not feed.subscribers:
                self._remove_locked(stream, Ending.UNSUBSCRIBED)

    def _create_locked(self, name: str) -> Stream:
        target = self._router.target(name)
        group = self._group_with_room_locked(target)
        new_group = group is None
        if group is None:
            group = self._new_group_locked(name, target)
        feed = StreamFeed(
            name,
            group.loop,
            capacity=self._config.max_buffered_messages,
            max_bytes=self._config.max_buffered_bytes,
            rule=rule_for(name),
            reset_threshold=self._config.sequence_reset_threshold,
        )
        feed.on_switch = self._on_handover  # the last stream to switch ends a handover
        stream = Stream(name, time.time(), time.monotonic(), feed, group)
        self._streams[name] = stream
        group.streams[name] = stream
        self._counters.stream_creations += 1
        feed.attach(group.connection)
        if group.replacement is not None:
            feed.begin_handover(group.replacement)
        for connection in group.connections():
            connection.carry(group.feeds())
        if new_group:
            group.connection.start()
        self._publish_locked()
        return stream

    def _group_with_room_locked(self, target: Target) -> Group | None:
        """A group of ``target`` (a connection never carries two routes) with room."""
        if not target.combined:
            return None
        limit = self._config.streams_per_connection
        for group in self._groups:
            same_route = group.connection.target == target
            if same_route and not group.closed and len(group.streams) < limit:
                return group
        return None

    def _new_group_locked(self, first_stream: str, target: Target) -> Group:
        number = next(self._numbers)
        name = f"conn-{number}" if target.combined else first_stream
        loop = DeliveryLoop(name, self._gap_listeners)
        connection = self._new_connection_locked(number, name, target)
        group = Group(number, loop, connection)
        self._groups.append(group)
        self._group_of[connection] = group
        return group

    def _new_connection_locked(
        self, number: int, name: str, target: Target, *, replacement: bool = False
    ) -> Connection:
        return Connection(
            number,
            name,
            self._config,
            target,
            self,
            ssl_context=self._ssl_context,
            replacement=replacement,
        )

    def _remove_locked(
        self, stream: Stream, ending: Ending, error: Exception | None = None
    ) -> None:
        del self._streams[stream.name]
        group = stream.group
        del group.streams[stream.name]
        self._end_feed_locked(stream.feed, ending, error)
        if group.streams:
            for connection in group.connections():
                connection.carry(group.feeds())
        else:
            self._close_group_locked(group)
        self._publish_locked()

    def _end_feed_locked(
        self, feed: StreamFeed, ending: Ending, error: Exception | None = None
    ) -> None:
        subscribers = feed.subscribers
        for subscription in subscribers:
            subscription.deactivate()
        feed.subscribers = ()
        self._counters.stream_cleanups += 1
        feed.finish(ending, subscribers, error)
        self._retiring_feeds.append(feed)

    def _close_group_locked(self, group: Group) -> None:
        group.closed = True  # a closed group has no handover: abandon one in progress
        self._handover_event_locked(group, Event.GROUP_CLOSED)
        if group in self._groups:
            self._groups.remove(group)
        for connection in group.connections():
            self._retire_locked(connection)
        group.loop.close()
        self._retiring_loops.append(group.loop)

    # -- bulk removal ----------------------------------------------------------------------------

    def remove_idle(self, idle_timeout: float) -> int:
        """End every stream without a message for ``idle_timeout`` seconds; tell on_complete."""
        now = time.monotonic()
        with self._lock:
            idle = [s for s in self._streams.values() if s.idle_seconds(now) >= idle_timeout]
            for stream in idle:
                self._remove_locked(stream, Ending.COMPLETED)
        return len(idle)

    def close(self) -> list[Connection]:
        """Refuse new subscriptions and end every stream; return the connections still ending.

        Group by group: each connection is stopped once (no ``UNSUBSCRIBE`` per stream) and the
        state is published once, so closing 1,000 streams costs no more than closing 5 groups.
        """
        with self._lock:
            self._closed = True
            for group in list(self._groups):
                for stream in group.streams.values():
                    del self._streams[stream.name]
                    self._end_feed_locked(stream.feed, Ending.COMPLETED)
                group.streams.clear()
                self._close_group_locked(group)
            self._publish_locked()
            return [c for c in self._retiring_connections if c.thread.is_alive()]

    def threads(self) -> list[threading.Thread]:
        """Every thread still running that this registry started."""
        with self._lock:
            threads = [c.thread for c in self._all_connections_locked()]
            threads += [loop.thread for loop in self._all_loops_locked() if loop.thread is not None]
            return [t for t in threads if t.is_alive()]

    # -- handovers (one table: wsmanager.engine.handover) ----------------------------------------

    def next_handover_deadline(self) -> float | None:
        """When the supervisor must look at the handovers again (monotonic), or None: the
        earliest deadline of a running handover (its replacement's time to open, or the grace
        for quiet streams once it is open)."""
        with self._lock:
            deadlines = [
                deadline
                for group in self._groups
                if group.handover is not None
                and (deadline := group.handover.deadline()) is not None
            ]
        return min(deadlines, default=None)

    def advance_handovers(self) -> None:
        """Finish each handover whose streams have all switched, or whose grace is over;
        abandon each whose replacement did not open in time."""
        now = time.monotonic()
        with self._lock:
            for group in list(self._groups):
                handover = group.handover
                if handover is None:
                    continue
                deadline = handover.deadline()
                if handover.phase is Phase.STARTED:
                    if deadline is not None and now >= deadline:
                        self._handover_event_locked(group, Event.OPEN_TIMED_OUT)
                    continue
                replacement = handover.replacement
                if all(s.feed.switched_to(replacement) for s in group.streams.values()):
                    self._handover_event_locked(group, Event.ALL_SWITCHED)
                elif deadline is not None and now >= deadline:
                    log.info("connection %s: handover grace over; switching", group.number)
                    self._handover_event_locked(group, Event.GRACE_OVER)

    def _start_handover_locked(self, group: Group, reason: str) -> bool:
        if group.handover is not None or group.closed or self._closed:
            return False
        old = group.connection
        replacement = self._new_connection_locked(
            old.number, old.name, old.target, replacement=True
        )
        group.handover = Handover(old, replacement, reason, time.monotonic())
        self._group_of[replacement] = group
        for stream in group.streams.values():
            stream.feed.begin_handover(replacement)
        replacement.carry(group.feeds())
        self._counters.rotations += 1
        log.info("connection %s: handover started (%s)", old.name, reason)
        replacement.start()
        self._on_handover()  # the supervisor times the replacement's opening
        return True

    def _handover_event_locked(self, group: Group, event: Event) -> None:
        """Move the group's handover by ``event`` (if its table allows it) and carry out what
        the group says the new phase needs: a connection to retire, a state to publish, the
        supervisor to wake (it times the grace once the replacement is open)."""
        outcome = group.handover_event(event, time.monotonic())
        if outcome is None:
            return
        if outcome.retire is not None:
            self._retire_locked(outcome.retire)
        if outcome.publish:
            self._publish_locked()
        else:
            self._on_handover()

    def _retire_locked(self, connection: Connection) -> None:
        """Stop ``connection``; its counters are folded in once its thread has ended."""
        connection.carry({})
        connection.stop()
        if connection not in self._retiring_connections:
            self._retiring_connections.append(connection)

    # -- ConnectionListener, called on reader threads ---------------------------------------------

    def connection_state_changed(
        self, connection: Connection, state: ConnectionState, socket_open: bool
    ) -> None:
        with self._lock:
            group = self._group_of.get(connection)
            if group is None or connection not in group.connections():
                return
            group.socket_open[connection] = socket_open
            handover = group.handover
            if handover is not None:
                if connection is handover.replacement:
                    event = Event.REPLACEMENT_OPEN if socket_open else Event.REPLACEMENT_LOST
                    self._handover_event_locked(group, event)
                elif not socket_open:
                    self._handover_event_locked(group, Event.OLD_LOST)
            active = self._active_connections_locked()
            if active > self._counters.active_connections_hwm:
                self._counters.active_connections_hwm = active
            self._publish_locked()

    def connection_failed(self, connection: Connection, make_error: ErrorFactory) -> None:
        with self._lock:
            group = self._group_of.get(connection)
            if group is None or group.closed or connection not in group.connections():
                return
            handover = group.handover
            if handover is not None:  # one side failed: the other carries the streams on
                if connection is handover.replacement:
                    self._handover_event_locked(group, Event.REPLACEMENT_FAILED)
                else:
                    self._handover_event_locked(group, Event.OLD_LOST)
                return
            for stream in list(group.streams.values()):
                error = make_error(stream.name)
                self._note_failure_locked(stream.name, error)
                self._remove_locked(stream, Ending.FAILED, error)

    def stream_refused(
        self, connection: Connection, stream_name: str, code: int | None, reason: str
    ) -> None:
        with self._lock:
            stream = self._streams.get(stream_name)
            if stream is None or self._group_of.get(connection) is not stream.group:
                return
            error = StreamRejectedError(stream_name, code, reason)
            self._note_failure_locked(stream_name, error)
            self._remove_locked(stream, Ending.FAILED, error)

    def rotation_due(self, connection: Connection, reason: str) -> bool:
        """Start a handover of ``connection``'s group; False when that cannot be now (a
        handover is running, or ``connection`` is not the group's current connection)."""
        with self._lock:
            group = self._group_of.get(connection)
            if group is None or connection is not group.connection:
                return False
            return self._start_handover_locked(group, reason)

    def connection_ended(self, connection: Connection) -> None:
        with self._lock:
            group = self._group_of.get(connection)
            handover = None if group is None else group.handover
            if group is None or handover is None:
                return
            if connection is handover.old:
                self._handover_event_locked(group, Event.OLD_LOST)
            elif connection is handover.replacement:
                self._handover_event_locked(group, Event.REPLACEMENT_FAILED)

    def _note_failure_locked(self, stream: str, error: WSManagerError) -> None:
        self._counters.streams_failed += 1
        self._failures.append((stream, str(error), time.monotonic()))

    # -- reading -------------------------------------------------------------------------------

    def _publish_locked(self) -> None:
        self._on_status(self._state_locked())

    def _state_locked(self) -> ConnectionState:
        # Per group, not per stream: the same answer (a group's streams share its connection)
        # in time that does not grow with the number of streams.
        return aggregate_state(g.connection.state for g in self._groups if g.streams)

    def _active_connections_locked(self) -> int:
        return sum(
            1
            for group in self._groups
            for connection, is_open in group.socket_open.items()
            if is_open and connection.thread.is_alive()
        )

    def _all_connections_locked(self) -> Iterable[Connection]:
        for group in self._groups:
            yield from group.connections()
        yield from self._retiring_connections

    def _all_loops_locked(self) -> Iterable[DeliveryLoop]:
        for group in self._groups:
            yield group.loop
        yield from self._retiring_loops

    def _reap_locked(self) -> None:
        """Fold the counters of connections and feeds that are gone into the retired totals."""
        retired = self._counters.retired
        still: list[Connection] = []
        for connection in self._retiring_connections:
            if connection.thread.is_alive():
                still.append(connection)
            else:
                retired.add_connection(connection)
                self._group_of.pop(connection, None)
        self._retiring_connections = still
        self._retiring_loops = [
            loop
            for loop in self._retiring_loops
            if loop.thread is not None and loop.thread.is_alive()
        ]
        for feed in self._retiring_feeds:
            retired.add_feed(feed)
        self._retiring_feeds = []

    def forget_after_fork(self) -> None:
        """In a forked child: forget every stream and connection, touching no socket (they are
        the parent's) and no lock another thread may have held at the fork."""
        self._lock = make_lock("registry")
        self._closed = True
        self._streams.clear()
        self._groups.clear()
        self._group_of.clear()
        self._retiring_connections.clear()
        self._retiring_loops.clear()
        self._retiring_feeds.clear()

    def state(self) -> ConnectionState:
        with self._lock:
            return self._state_locked()

    def infos(self) -> list[StreamInfo]:
        with self._lock:
            return [stream_info(s) for s in self._streams.values()]

    def active_count(self) -> int:
        with self._lock:
            return len(self._streams)

    def disconnected_for(self) -> list[tuple[str, float]]:
        """(name, seconds) of each active stream whose connection is not open now."""
        now = time.monotonic()
        with self._lock:
            return [
                (s.name, now - since)
                for s in self._streams.values()
                if (since := s.group.connection.disconnected_since) is not None
            ]

    def recent_failures(self, within: float) -> list[tuple[str, str, float]]:
        """(stream, reason, seconds ago) of streams that failed in the last ``within`` s."""
        now = time.monotonic()
        with self._lock:
            return [(s, r, now - t) for s, r, t in self._failures if now - t <= within]

    def metrics(self) -> WSManagerMetrics:
        with self._lock:
            self._reap_locked()
            totals = Totals(**vars(self._counters.retired))
            for connection in self._all_connections_locked():
                totals.add_connection(connection)
            for stream in self._streams.values():
                totals.add_feed(stream.feed)
            return manager_metrics(
                self._counters,
                totals,
                active_connections=self._active_connections_locked(),
                streams=self._streams.values(),
                groups=len(self._groups),
            )
