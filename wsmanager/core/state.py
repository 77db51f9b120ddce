"""Plain values describing a manager: connection state, stream snapshots, metrics, health."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .._html import stream_html

__all__ = [
    "ConnectionState",
    "Gap",
    "Health",
    "StreamInfo",
    "WSManagerMetrics",
    "aggregate_state",
]


class ConnectionState(str, enum.Enum):
    """The state of one stream, or of a whole manager."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"

    def __str__(self) -> str:
        return self.value


def aggregate_state(states: Iterable[ConnectionState]) -> ConnectionState:
    """Connected when every stream is, connecting when any is not yet, disconnected when none."""
    seen = False
    for state in states:
        seen = True
        if state is not ConnectionState.CONNECTED:
            return ConnectionState.CONNECTING
    return ConnectionState.CONNECTED if seen else ConnectionState.DISCONNECTED


@dataclass(frozen=True)
class Gap:
    """A jump in a stream's sequence numbers: ``expected`` (the first missing number) was never
    delivered; ``received`` arrived instead. ``after_reconnect`` is False when the jump happened
    on a live connection. ``reset`` is True when the numbers started again far behind (the
    exchange restarted its ids): ``expected`` was due next, ``received`` is the new number, and
    the stream goes on from it."""

    stream: str
    expected: int
    received: int
    after_reconnect: bool
    reset: bool = False

    @property
    def missing(self) -> int:
        """How many numbers are missing."""
        return self.received - self.expected


@dataclass(frozen=True)
class StreamInfo:
    """A snapshot of one active stream. Times are epoch seconds."""

    name: str
    url: str
    subscribers: int
    state: ConnectionState
    created_at: float
    last_message_at: float | None
    messages_received: int
    retry_attempt: int
    reconnects: int
    invalid_messages: int = 0
    callback_errors: int = 0
    dropped_messages: int = 0
    oversized_messages: int = 0
    buffered_messages: int = 0
    buffered_bytes: int = 0
    gaps: int = 0
    duplicates: int = 0
    resubscribes: int = 0
    connection: int = 0  # number of the connection carrying the stream now

    def _repr_html_(self) -> str:
        """This snapshot as an HTML table, for Jupyter."""
        return stream_html(self)


@dataclass(frozen=True)
class WSManagerMetrics:
    """Counters of one manager. Gauges: ``active_connections`` (sockets open now),
    ``active_streams``, ``subscribers``, ``connections``. Every other number only grows:
    ``retry_count`` counts retries started after a failed attempt, ``connection_attempts`` every
    attempt, ``connection_attempts_throttled`` those that waited for the host's budget."""

    active_connections: int
    active_streams: int
    subscribers: int
    retry_count: int
    stream_creations: int
    stream_cleanups: int
    active_connections_hwm: int
    messages_received: int
    invalid_messages: int
    callback_errors: int
    dropped_messages: int
    oversized_messages: int = 0
    gaps: int = 0
    duplicates_dropped: int = 0
    connection_attempts: int = 0
    connection_attempts_throttled: int = 0
    client_messages_sent: int = 0
    streams_failed: int = 0
    rotations: int = 0
    resubscribes: int = 0
    backfilled_messages: int = 0
    connections: int = 0  # connection groups (each one connection, two during a handover)
    order_books: int = 0
    order_books_synced: int = 0
    order_book_resyncs: int = 0
    order_book_snapshot_requests: int = 0
    # User data streams (WSManager.user_data)
    user_data_connections: int = 0  # WebSocket API connections open now
    user_data_accounts: int = 0  # accounts (API keys) subscribed
    user_data_subscriptions: int = 0  # of those, with a live subscription now
    user_data_events: int = 0
    user_data_gaps: int = 0  # windows without a subscription (each reported as a Gap)
    user_data_rejections: int = 0  # subscriptions refused for good (StreamRejectedError)
    implementation: str = "WSManager"

    def as_dict(self) -> dict[str, Any]:
        """The metrics as a plain dict with snake_case keys."""
        return asdict(self)


@dataclass(frozen=True)
class Health:
    """Whether a manager is healthy, and if not, why."""

    healthy: bool
    reasons: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.healthy
