"""The records of the stream table: a stream, a connection group, and the manager's counters.

A :class:`Group` is up to ``streams_per_connection`` streams that share one callback thread and
are carried by one connection (two during a handover). Every field is guarded by the registry's
lock (:mod:`wsmanager.engine.registry`), which owns these records.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.delivery import DeliveryLoop, StreamFeed, Subscription
from ..net.connection import Connection
from .handover import Handover

__all__ = ["Counters", "Group", "Stream", "Totals"]


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
