"""Prometheus metrics of relays and relay clients: collectors that read a snapshot at scrape time.

The only module of :mod:`wsmanager.relay` that imports prometheus-client. Each relay and client
registers its collector into a registry of its own (a relay's also holds its manager's
samples, labelled ``manager="relay"``); nothing is registered at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .state import RelayClientMetrics, RelayMetrics, RelayStreamInfo

__all__ = ["RelayClientCollector", "RelayCollector", "exposition", "new_registry"]

# (attribute, exported name, help). Counters get "_total" from the client.
RELAY_GAUGES = (
    ("streams", "ws_relay_streams", "Streams being relayed"),
    ("buffered_entries", "ws_relay_buffered_entries", "Entries waiting to be written to Redis"),
    ("redis_connected", "ws_relay_redis_connected", "1 when Redis answered the last call"),
)
RELAY_COUNTERS = (
    ("messages_received", "ws_relay_messages_received", "Messages received from the exchange"),
    ("entries_written", "ws_relay_entries_written", "Entries written to Redis"),
    (
        "duplicates_skipped",
        "ws_relay_duplicates_skipped",
        "Messages not written because Redis (or this relay) already had them",
    ),
    (
        "dropped_entries",
        "ws_relay_entries_dropped",
        "Messages lost because the buffer overflowed while Redis was away",
    ),
    ("standby_trimmed", "ws_relay_standby_trimmed", "Oldest messages let go while standing by"),
    ("write_errors", "ws_relay_write_errors", "Entries Redis refused (other than duplicates)"),
    ("redis_errors", "ws_relay_redis_errors", "Failed Redis round trips and connection attempts"),
    ("redis_reconnects", "ws_relay_redis_reconnects", "Connections to Redis after an outage"),
    ("lease_acquisitions", "ws_relay_lease_acquisitions", "Times this relay became active"),
    ("lease_losses", "ws_relay_lease_losses", "Writes refused: another relay held the lease"),
    ("exchange_gaps", "ws_relay_exchange_gaps", "Jumps in the exchange's sequence numbers"),
    ("failed_streams", "ws_relay_failed_streams", "Streams given up (refused by the exchange)"),
    ("internal_errors", "ws_relay_internal_errors", "Writer rounds that failed (logged; went on)"),
)
CLIENT_GAUGES = (
    ("streams", "ws_relay_client_streams", "Streams subscribed"),
    ("subscribers", "ws_relay_client_subscribers", "Subscriptions across all streams"),
    (
        "buffered_messages",
        "ws_relay_client_buffered_messages",
        "Entries read, not yet handed to callbacks",
    ),
    ("redis_connected", "ws_relay_client_redis_connected", "1 when the last read succeeded"),
)
CLIENT_COUNTERS = (
    ("entries_received", "ws_relay_client_entries_received", "Entries read from Redis"),
    ("invalid_messages", "ws_relay_client_invalid_messages", "Entries without valid JSON data"),
    ("callback_errors", "ws_relay_client_callback_errors", "Exceptions raised by callbacks"),
    ("gaps", "ws_relay_client_gaps", "Entries trimmed by retention before they were read"),
    ("redis_errors", "ws_relay_client_redis_errors", "Failed reads and connection attempts"),
    ("reconnects", "ws_relay_client_reconnects", "Connections to Redis after an outage"),
    (
        "backpressure_pauses",
        "ws_relay_client_backpressure_pauses",
        "Times a stream was left unread because its callbacks lagged",
    ),
)


class _RelaySource(Protocol):
    def get_metrics(self) -> RelayMetrics: ...  # pragma: no cover

    def stream_counts(self) -> dict[str, tuple[int, int, int]]: ...  # pragma: no cover


class _ClientSource(Protocol):
    def get_metrics(self) -> RelayClientMetrics: ...  # pragma: no cover

    def get_stream_info(self) -> list[RelayStreamInfo]: ...  # pragma: no cover


def _families(
    gauges: tuple[tuple[str, str, str], ...], counters: tuple[tuple[str, str, str], ...]
) -> list[GaugeMetricFamily | CounterMetricFamily]:
    families: list[GaugeMetricFamily | CounterMetricFamily] = [
        GaugeMetricFamily(name, text, labels=[]) for _, name, text in gauges
    ]
    families += [CounterMetricFamily(name, text, labels=[]) for _, name, text in counters]
    return families


class RelayCollector(Collector):
    """One relay's counters, its role, and per-stream written/buffered/dropped entries."""

    def __init__(self, source: _RelaySource) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield from self._build(None, {})

    def collect(self) -> Iterator[Metric]:
        yield from self._build(self._source.get_metrics(), self._source.stream_counts())

    def _build(
        self, metrics: RelayMetrics | None, streams: dict[str, tuple[int, int, int]]
    ) -> list[Metric]:
        families = _families(RELAY_GAUGES, RELAY_COUNTERS)
        role = GaugeMetricFamily(
            "ws_relay_role", "1 for this relay's current role", labels=["role"]
        )
        written = CounterMetricFamily(
            "ws_relay_stream_entries_written",
            "Entries settled in Redis, by stream",
            labels=["stream"],
        )
        buffered = GaugeMetricFamily(
            "ws_relay_stream_buffered_entries", "Entries buffered, by stream", labels=["stream"]
        )
        dropped = CounterMetricFamily(
            "ws_relay_stream_entries_dropped",
            "Entries lost to overflow, by stream",
            labels=["stream"],
        )
        if metrics is not None:
            for family, (attribute, _, _) in zip(
                families, RELAY_GAUGES + RELAY_COUNTERS, strict=True
            ):
                family.add_metric([], float(getattr(metrics, attribute)))
            for name in ("active", "standby", "unknown"):
                role.add_metric([name], 1.0 if metrics.role == name else 0.0)
            for stream, (done, waiting, lost) in streams.items():
                written.add_metric([stream], done)
                buffered.add_metric([stream], waiting)
                dropped.add_metric([stream], lost)
        return [*families, role, written, buffered, dropped]


class RelayClientCollector(Collector):
    """One relay client's counters, and per-stream entries received and gaps."""

    def __init__(self, source: _ClientSource) -> None:
        self._source = source

    def describe(self) -> Iterator[Metric]:
        yield from self._build(None, [])

    def collect(self) -> Iterator[Metric]:
        yield from self._build(self._source.get_metrics(), self._source.get_stream_info())

    def _build(
        self, metrics: RelayClientMetrics | None, streams: list[RelayStreamInfo]
    ) -> list[Metric]:
        families = _families(CLIENT_GAUGES, CLIENT_COUNTERS)
        received = CounterMetricFamily(
            "ws_relay_client_stream_entries_received", "Entries read, by stream", labels=["stream"]
        )
        gaps = CounterMetricFamily(
            "ws_relay_client_stream_gaps", "Retention gaps, by stream", labels=["stream"]
        )
        if metrics is not None:
            for family, (attribute, _, _) in zip(
                families, CLIENT_GAUGES + CLIENT_COUNTERS, strict=True
            ):
                family.add_metric([], float(getattr(metrics, attribute)))
            for info in streams:
                received.add_metric([info.name], info.entries_received)
                gaps.add_metric([info.name], info.gaps)
        return [*families, received, gaps]


def new_registry() -> CollectorRegistry:
    """A registry of one's own (never the process-wide default)."""
    return CollectorRegistry(auto_describe=True)


def exposition(registry: CollectorRegistry) -> str:
    """The registry's samples in the Prometheus text format."""
    return generate_latest(registry).decode("utf-8")
