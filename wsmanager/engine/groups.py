"""The records of the stream table: a stream, a connection group, and the manager's counters.

A :class:`Group` is up to ``streams_per_connection`` streams that share one callback thread and
are carried by one connection (two during a handover). Every field is guarded by the registry's
lock (:mod:`wsmanager.engine.registry`), which owns these records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..core.delivery import DeliveryLoop, StreamFeed, Subscription
from ..net.connection import Connection
from .handover import REARM_AFTER, Event, Handover, Phase

__all__ = ["Counters", "Group", "Outcome", "Stream", "Totals"]

log = logging.getLogger("wsmanager")


@dataclass(eq=False)
class Stream:
    """One shared stream: its feed (buffer, order, subscribers) and the group that carries it."""

    name: str
    created_at: float  # epoch seconds
    created_monotonic: float
    feed: StreamFeed
    group: Group

    @property
    def subscribers(self) -> tuple[Subscription, ...]:
        return self.feed.subscribers

    def idle_seconds(self, now: float) -> float:
        last = self.feed.last_message_monotonic
        return now - (last if last is not None else self.created_monotonic)


@dataclass(eq=False)
class Group:
    """Streams that share a callback thread and a connection."""

    number: int
    loop: DeliveryLoop
    connection: Connection
    streams: dict[str, Stream] = field(default_factory=dict)
    handover: Handover[Connection] | None = None  # never set on a closed group
    socket_open: dict[Connection, bool] = field(default_factory=dict)
    reconnects_before: int = 0  # of the connections it had before this one
    closed: bool = False

    def feeds(self) -> dict[str, StreamFeed]:
        return {name: stream.feed for name, stream in self.streams.items()}

    @property
    def replacement(self) -> Connection | None:
        return None if self.handover is None else self.handover.replacement

    def connections(self) -> tuple[Connection, ...]:
        handover = self.handover
        return (self.connection,) if handover is None else (self.connection, handover.replacement)

    def handover_event(self, event: Event, now: float) -> Outcome | None:
        """Move this group's handover by ``event``; None when its table has no such move.

        Promoted: every stream takes the replacement's messages, the replacement becomes the
        group's connection, the old one is to retire. Abandoned: the replacement is to retire;
        the old connection carries every stream on (unless the group closed) and asks for a
        rotation again after ``REARM_AFTER``."""
        handover = self.handover
        if handover is None or not handover.can(event):
            return None
        phase = handover.move(event, now)
        old, replacement = handover.old, handover.replacement
        if phase is Phase.PROMOTED:
            self.handover = None
            for stream in self.streams.values():
                stream.feed.force_switch(replacement)
            self.reconnects_before += old.reconnects
            self.connection = replacement
            self.socket_open.pop(old, None)
            log.info("connection %s: handover done (%s)", self.number, handover.reason)
            return Outcome(retire=old, publish=True)
        if phase is Phase.ABANDONED:
            self.handover = None
            self.socket_open.pop(replacement, None)
            if self.closed:
                return Outcome(retire=replacement, publish=False)
            for stream in self.streams.values():
                stream.feed.attach(old)
            old.rearm_rotation(REARM_AFTER)
            log.warning(
                "connection %s: handover (%s) abandoned: %s; the old connection carries on",
                self.number,
                handover.reason,
                event.value,
            )
            return Outcome(retire=replacement, publish=True)
        return Outcome(retire=None, publish=False)  # the replacement is open: time the grace


@dataclass(frozen=True)
class Outcome:
    """What the registry does after a handover moved: retire a connection, publish the state
    (else wake the supervisor, which times the grace)."""

    retire: Connection | None
    publish: bool


@dataclass
class Totals:
    """Counters of connections and streams that are gone."""

    messages_received: int = 0
    invalid_messages: int = 0
    callback_errors: int = 0
    dropped_messages: int = 0
    oversized_messages: int = 0
    retry_count: int = 0
    gaps: int = 0
    duplicates: int = 0
    throttled_attempts: int = 0
    client_messages_sent: int = 0
    connection_attempts: int = 0
    resubscribes: int = 0
    backfilled: int = 0

    def add_connection(self, connection: Connection) -> None:
        self.messages_received += connection.messages_received
        self.invalid_messages += connection.invalid_messages
        self.oversized_messages += connection.oversized_messages
        self.retry_count += connection.retry_count
        self.throttled_attempts += connection.throttled
        self.client_messages_sent += connection.gate.total
        self.connection_attempts += connection.attempts
        self.resubscribes += sum(connection.resubscribes.values())

    def add_feed(self, feed: StreamFeed) -> None:
        self.callback_errors += feed.callback_errors
        self.dropped_messages += feed.dropped
        self.gaps += feed.gaps
        self.duplicates += feed.duplicates
        self.backfilled += feed.backfilled


@dataclass
class Counters:
    stream_creations: int = 0
    stream_cleanups: int = 0
    streams_failed: int = 0
    rotations: int = 0
    active_connections_hwm: int = 0
    retired: Totals = field(default_factory=Totals)
