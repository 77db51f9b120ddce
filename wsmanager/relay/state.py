"""Plain values describing a relay and a relay client: roles, metrics snapshots, stream info."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RelayClientMetrics", "RelayMetrics", "RelayStreamInfo", "Role"]


class Role(str, enum.Enum):
    """A relay's part in its group."""

    ACTIVE = "active"  # holds the lease: writes to Redis
    STANDBY = "standby"  # Redis says another relay holds it: buffers the latest messages
    UNKNOWN = "unknown"  # cannot tell (Redis unreachable, or not asked yet): buffers, counts drops

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class RelayMetrics:
    """Counters of one relay. Counters only ever grow; ``buffered_entries`` is a gauge."""

    role: str
    streams: int
    redis_connected: bool
    messages_received: int  # from the exchange
    entries_written: int  # accepted by Redis
    duplicates_skipped: int  # not written: already in Redis (same id) or repeated by the exchange
    dropped_entries: int  # lost: the buffer overflowed while this relay was (maybe) the writer
    standby_trimmed: int  # oldest buffered messages let go while standby (expected)
    buffered_entries: int
    write_errors: int  # entries Redis refused for another reason (e.g. a key of another type)
    redis_errors: int  # failed round trips and connection attempts
    redis_reconnects: int
    lease_acquisitions: int  # times this relay took the lease (became active)
    lease_losses: int  # times a write found the lease taken by another relay
    exchange_gaps: int  # jumps in sequence numbers reported by the manager
    failed_streams: int  # streams given up (the exchange refused them)
    internal_errors: int = 0  # writer rounds that failed (a bug: logged, the writer went on)
    implementation: str = "Relay"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RelayClientMetrics:
    """Counters of one relay client. Counters only ever grow; gauges say so."""

    streams: int  # gauge
    subscribers: int  # gauge
    redis_connected: bool
    entries_received: int  # read from Redis
    invalid_messages: int  # entries without a JSON ``data`` field
    callback_errors: int
    gaps: int  # entries trimmed by retention before this client read them (jumps reported)
    buffered_messages: int  # gauge: read, not yet handed to callbacks
    redis_errors: int
    reconnects: int
    backpressure_pauses: int  # times a stream stopped being read because callbacks lagged
    implementation: str = "RelayClient"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RelayStreamInfo:
    """A snapshot of one stream of a relay client."""

    name: str
    key: str
    subscribers: int
    last_id: str | None  # the last entry read (resume point); None before the first
    entries_received: int
    buffered_messages: int
    gaps: int
    invalid_messages: int
    callback_errors: int
