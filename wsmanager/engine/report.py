"""What a manager reports, built from its records: one stream's snapshot, the manager's counters
and why it is unhealthy (pure functions; the registry calls the first two under its lock)."""

from __future__ import annotations

from collections.abc import Iterable

from ..core.state import StreamInfo, WSManagerMetrics
from .groups import Counters, Stream, Totals

__all__ = ["health_reasons", "manager_metrics", "stream_info"]


def stream_info(stream: Stream) -> StreamInfo:
    """A snapshot of ``stream`` and the connection carrying it now."""
    connection = stream.group.connection
    feed = stream.feed
    raw = not connection.target.combined  # a raw connection's counters are its one stream's
    return StreamInfo(
        name=stream.name,
        url=connection.display_url,
        subscribers=len(feed.subscribers),
        state=connection.state,
        created_at=stream.created_at,
        last_message_at=feed.last_message_at,
        messages_received=feed.received,
        retry_attempt=connection.retry_attempt,
        reconnects=stream.group.reconnects_before + connection.reconnects,
        invalid_messages=connection.invalid_messages if raw else 0,
        callback_errors=feed.callback_errors,
        dropped_messages=feed.dropped,
        oversized_messages=connection.oversized_messages if raw else 0,
        buffered_messages=feed.buffered(),
        buffered_bytes=feed.buffered_bytes,
        gaps=feed.gaps,
        duplicates=feed.duplicates,
        resubscribes=sum(c.resubscribes.get(stream.name, 0) for c in stream.group.connections()),
        connection=connection.number,
    )


def manager_metrics(
    counters: Counters,
    totals: Totals,
    *,
    active_connections: int,
    streams: Iterable[Stream],
    groups: int,
) -> WSManagerMetrics:
    """The manager's metrics: the registry's own ``counters``, and ``totals`` over every
    connection and feed it ever had (those that are gone folded in)."""
    streams = list(streams)
    return WSManagerMetrics(
        active_connections=active_connections,
        active_streams=len(streams),
        subscribers=sum(len(s.subscribers) for s in streams),
        retry_count=totals.retry_count,
        stream_creations=counters.stream_creations,
        stream_cleanups=counters.stream_cleanups,
        active_connections_hwm=counters.active_connections_hwm,
        messages_received=totals.messages_received,
        invalid_messages=totals.invalid_messages,
        callback_errors=totals.callback_errors,
        dropped_messages=totals.dropped_messages,
        oversized_messages=totals.oversized_messages,
        gaps=totals.gaps,
        duplicates_dropped=totals.duplicates,
        connection_attempts=totals.connection_attempts,
        connection_attempts_throttled=totals.throttled_attempts,
        client_messages_sent=totals.client_messages_sent,
        streams_failed=counters.streams_failed,
        rotations=counters.rotations,
        resubscribes=totals.resubscribes,
        backfilled_messages=totals.backfilled,
        connections=groups,
    )


def health_reasons(
    limit: float,
    disconnected: Iterable[tuple[str, float]],
    failures: Iterable[tuple[str, str, float]],
    user_data_waiting: Iterable[tuple[str, float]],
) -> list[str]:
    """Why a manager is unhealthy: streams without a connection for longer than ``limit``
    (``max_retry_delay``) seconds, streams that failed for good within ``limit``, and user data
    accounts without a subscription for longer than ``limit``."""
    reasons = [
        f"stream {name!r} has had no connection for {seconds:.1f}s "
        f"(more than max_retry_delay, {limit:g}s)"
        for name, seconds in disconnected
        if seconds > limit
    ]
    reasons += [
        f"stream {name!r} failed {ago:.1f}s ago: {reason}" for name, reason, ago in failures
    ]
    reasons += [
        f"user data of account {key} has had no subscription for {seconds:.1f}s "
        f"(more than max_retry_delay, {limit:g}s)"
        for key, seconds in user_data_waiting
        if seconds > limit
    ]
    return reasons
