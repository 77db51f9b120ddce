"""Prometheus metrics through prometheus-client: a collector that reads a manager at scrape time.

This is the only module that imports prometheus-client. Nothing is registered at import time: each
manager registers its collector into a registry of its own, and into a shared ``registry=`` when
given one, there told apart by a ``manager`` label.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .core.state import StreamInfo, WSManagerMetrics

__all__ = ["CONTENT_TYPE_LATEST", "ManagerCollector", "PrometheusExporter"]

# (attribute of WSManagerMetrics, exported name, help). Counters get "_total" from the client.
GAUGES = (
    ("active_connections", "ws_manager_active_connections", "Open WebSocket connections now"),
    (
        "active_connections_hwm",
        "ws_manager_active_connections_hwm",
        "Most connections open at once since the manager started",
    ),
    ("active_streams", "ws_manager_active_streams", "Active (shared) streams"),
    ("subscribers", "ws_manager_subscribers", "Subscriptions across all streams"),
    (
        "connections",
        "ws_manager_connections",
        "Connections carrying streams (each carries up to streams_per_connection)",
    ),
    ("order_books", "ws_manager_order_books", "Local order books open"),
    ("order_books_synced", "ws_manager_order_books_synced", "Local order books in sync now"),
    (
        "user_data_connections",
        "ws_manager_user_data_connections",
        "WebSocket API connections open now (user data streams)",
    ),
    ("user_data_accounts", "ws_manager_user_data_accounts", "Accounts subscribed via user_data"),
    (
        "user_data_subscriptions",
        "ws_manager_user_data_subscriptions",
        "Accounts whose user data subscription is live now",
    ),
)
COUNTERS = (
    ("retry_count", "ws_manager_retry_count", "Reconnect attempts"),
    ("stream_creations", "ws_manager_stream_creations", "Streams created"),
    (
        "stream_cleanups",
        "ws_manager_stream_cleanups",
        "Streams closed (last unsubscribe, idle cleanup, failure or destroy)",
    ),
    ("messages_received", "ws_manager_messages_received", "Data frames received"),
    (
        "invalid_messages",
        "ws_manager_invalid_messages",
        "Frames skipped: invalid JSON or UTF-8, or binary",
    ),
    ("callback_errors", "ws_manager_callback_errors", "Exceptions raised by subscriber callbacks"),
    (
        "dropped_messages",
        "ws_manager_messages_dropped",
        "Messages dropped because callbacks fell behind the stream",
    ),
    (
        "oversized_messages",
        "ws_manager_oversized_messages",
        "Messages refused for exceeding max_message_size (connection closed with 1009)",
    ),
    ("gaps", "ws_manager_gaps", "Jumps in sequenced streams (all streams)"),
    ("user_data_events", "ws_manager_user_data_events", "User data events delivered"),
    (
        "user_data_gaps",
        "ws_manager_user_data_gaps",
        "Windows in which a user data subscription was down (each reported as a Gap)",
    ),
    (
        "user_data_rejections",
        "ws_manager_user_data_rejections",
        "User data subscriptions the exchange refused for good",
    ),
    (
        "duplicates_dropped",
        "ws_manager_duplicates_dropped",
        "Messages dropped as duplicates or out of order (sequence numbers)",
    ),
    ("connection_attempts", "ws_manager_connection_attempts", "Connection attempts made"),
    (
        "connection_attempts_throttled",
        "ws_manager_connection_attempts_throttled",
        "Connection attempts that waited for the host's connection budget or Retry-After",
    ),
    (
        "client_messages_sent",
        "ws_manager_client_messages_sent",
        "Messages sent to the exchange: pings, pongs, SUBSCRIBE/UNSUBSCRIBE, close",
    ),
    (
        "streams_failed",
        "ws_manager_streams_failed",
        "Streams ended by an unrecoverable error (retries exhausted, rejected, refused)",
    ),
    ("rotations", "ws_manager_rotations", "Connection handovers (age or serverShutdown)"),
    ("resubscribes", "ws_manager_resubscribes", "Stale streams subscribed again"),
    (
        "backfilled_messages",
        "ws_manager_backfilled_messages",
        "Messages of a gap fetched from the REST API and delivered",
    ),
    (
        "order_book_resyncs",
        "ws_manager_order_book_resyncs",
        "Order book syncs after the first (a gap, a lagging snapshot, a reconnect)",
    ),
    (
        "order_book_snapshot_requests",
        "ws_manager_order_book_snapshot_requests",
        "REST depth snapshots requested by order books",
    ),
)
STREAM_AGE = "ws_manager_stream_last_message_age_seconds"
STREAM_GAPS = "ws_manager_stream_gaps"
BOOK_AGE = "ws_manager_order_book_seconds_since_update"
BOOK_SYNCED = "ws_manager_order_book_synced"


class _MetricsSource(Protocol):
    """What the collector reads: a WSManager (kept structural to keep imports one-way)."""

    def get_metrics(self) -> WSManagerMetrics: ...  # pragma: no cover

    def get_stream_info(self) -> list[StreamInfo]: ...  # pragma: no cover


class ManagerCollector(Collector):
    """Reads managers' counters when scraped, so the message path pays nothing.

    Without a label it serves one manager; with ``label="manager"`` it serves every manager
    attached to one shared registry, each sample labelled with its manager's name.
    """

    def __init__(self, label: str | None = None) -> None:
        self._label_names = [label] if label is not None else []
        self._lock = threading.Lock()  # guards _members
        self._members: dict[str, _MetricsSource] = {}

    def attach(self, name: str, source: _MetricsSource) -> None:
        with self._lock:
            if name in self._members:
                raise ValueError(
                    f"a manager named {name!r} is already registered in this registry; "
                    "give each manager its own metrics_name"
                )
            self._members[name] = source

    def detach(self, name: str) -> bool:
        """Forget ``name``; True when no manager is left."""
        with self._lock:
            self._members.pop(name, None)
            return not self._members

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            members = list(self._members.items())
        families = self._families()
        age, gaps, book_age, book_synced = families[-4:]
        now = time.time()
        for name, source in members:
            values = [name] if self._label_names else []
            metrics = source.get_metrics()
            for family, (attribute, _, _) in zip(families[:-4], GAUGES + COUNTERS, strict=True):
                family.add_metric(values, getattr(metrics, attribute))
            for info in source.get_stream_info():
                last = info.last_message_at if info.last_message_at is not None else info.created_at
                age.add_metric([*values, info.name], max(0.0, now - last))
                gaps.add_metric([*values, info.name], info.gaps)
            for book in getattr(source, "get_book_stats", list)():
                labels = [*values, book.symbol]
                book_synced.add_metric(labels, 1.0 if book.synced else 0.0)
                if book.seconds_since_update is not None:
                    book_age.add_metric(labels, book.seconds_since_update)
        yield from families

    def _families(self) -> list[GaugeMetricFamily | CounterMetricFamily]:
        labels = self._label_names
        families: list[GaugeMetricFamily | CounterMetricFamily] = [
            GaugeMetricFamily(name, help_text, labels=labels) for _, name, help_text in GAUGES
        ]
        families += [
            CounterMetricFamily(name, help_text, labels=labels) for _, name, help_text in COUNTERS
        ]
        families.append(
            GaugeMetricFamily(
                STREAM_AGE,
                "Seconds since the stream's last message (or since it was created)",
                labels=[*labels, "stream"],
            )
        )
        families.append(
            CounterMetricFamily(
                STREAM_GAPS,
                "Jumps in the stream's sequence numbers (while the stream is active)",
                labels=[*labels, "stream"],
            )
        )
        families.append(
            GaugeMetricFamily(
                BOOK_AGE,
                "Seconds since the order book last applied an event (or synced)",
                labels=[*labels, "symbol"],
            )
        )
        families.append(
            GaugeMetricFamily(
                BOOK_SYNCED, "1 when the order book is in sync", labels=[*labels, "symbol"]
            )
        )
        return families


_shared_lock = threading.Lock()  # guards _shared_collectors
_shared_collectors: weakref.WeakKeyDictionary[CollectorRegistry, ManagerCollector] = (
    weakref.WeakKeyDictionary()
)


class PrometheusExporter:
    """One manager's metrics: in a registry of its own, and optionally in a shared one."""

    def __init__(
        self, source: _MetricsSource, name: str, registry: CollectorRegistry | None = None
    ) -> None:
        self.name = name
        self._own = ManagerCollector()
        self._own.attach(name, source)
        self.own_registry = CollectorRegistry(auto_describe=True)
        self.own_registry.register(self._own)
        self._shared = registry
        if registry is not None:
            with _shared_lock:
                collector = _shared_collectors.get(registry)
                if collector is None:
                    collector = ManagerCollector(label="manager")
                    registry.register(collector)
                    _shared_collectors[registry] = collector
                collector.attach(name, source)

    def exposition(self) -> str:
        """This manager's samples, and only its, in the Prometheus text format."""
        return generate_latest(self.own_registry).decode("utf-8")

    def close(self) -> None:
        """Leave the shared registry; the last manager to leave unregisters the collector."""
        shared, self._shared = self._shared, None
        if shared is None:
            return
        with _shared_lock:
            collector = _shared_collectors.get(shared)
            if collector is not None and collector.detach(self.name):
                shared.unregister(collector)
                del _shared_collectors[shared]
