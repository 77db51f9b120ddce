"""The relay: a ``WSManager`` whose subscribers append every message to a Redis stream.

Messages arrive on the manager's callback threads, which only encode them and append them to
their stream's bounded ``incoming`` deque (oldest dropped when full), taking no lock. The
writer thread (:mod:`.writer`) does everything else. This module is the relay's face: its
options, the streams it relays, its metrics and health, and closing it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from ..backoff import BackoffPolicy
from ..config import redact_url, validate_stream_name
from ..core.flow import plain_subscribe
from ..core.state import Gap, Health, StreamInfo
from ..manager import WSManager
from ..net._closing import ClosesOnExit
from .entries import DEFAULT_KEY_PREFIX, IdAssigner, encode_data
from .entries import stream_key as make_stream_key
from .exposition import RelayCollector, exposition, new_registry
from .state import RelayMetrics, Role
from .writer import RelayStream, RelayWriter

__all__ = ["Relay"]

log = logging.getLogger("wsmanager.relay")

_MANAGER_DEFAULTS: dict[str, Any] = {"max_retry_attempts": None}  # a relay never gives up


class Relay(RelayWriter, ClosesOnExit):
    """Relay exchange streams into Redis Streams (``XADD <prefix><stream> MAXLEN ~ maxlen``).

    ``url`` is the exchange's base URL, as for :class:`~wsmanager.WSManager`;
    ``manager_options`` go to the manager (it retries forever unless told otherwise). Relays
    with the same ``group`` elect one active writer through a lease of ``lease_ttl`` seconds;
    the others stand by. While Redis is away each stream buffers at most ``buffer_size``
    messages (oldest dropped, counted), plus the batch that failed. Batches are written as
    soon as the previous one is done: under load they grow up to ``batch_size`` entries.
    """

    def __init__(
        self,
        redis_url: str,
        streams: Iterable[str] = (),
        *,
        url: str,
        # Redis layout
        maxlen: int = 100_000,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        group: str = "default",
        # Election
        lease_ttl: float = 5.0,
        # Limits
        buffer_size: int = 10_000,
        batch_size: int = 500,
        # Redis connection
        redis_timeout: float = 5.0,
        base_retry_delay: float = 0.5,
        max_retry_delay: float = 10.0,
        drain_timeout: float = 2.0,
        manager_options: Mapping[str, Any] | None = None,
    ) -> None:
        _check_int("maxlen", maxlen, 1)
        _check_int("buffer_size", buffer_size, 1)
        _check_int("batch_size", batch_size, 1)
        _check_seconds("lease_ttl", lease_ttl)
        _check_seconds("redis_timeout", redis_timeout)
        _check_seconds("base_retry_delay", base_retry_delay)
        _check_seconds("max_retry_delay", max_retry_delay)
        _check_seconds("drain_timeout", drain_timeout, allow_zero=True)
        if max_retry_delay < base_retry_delay:
            raise ValueError(
                f"max_retry_delay ({max_retry_delay}) must be >= base_retry_delay "
                f"({base_retry_delay})"
            )
        if not group or not isinstance(group, str):
            raise ValueError(f"group must be a non-empty str, got {group!r}")
        names = [validate_stream_name(s) for s in streams]
        super().__init__(
            redis_url,
            maxlen=maxlen,
            key_prefix=key_prefix,
            group=group,
            lease_ttl=lease_ttl,
            buffer_size=buffer_size,
            batch_size=batch_size,
            redis_timeout=redis_timeout,
            policy=BackoffPolicy(base_retry_delay, max_retry_delay),
            drain_timeout=drain_timeout,
        )
        self.registry = new_registry()
        options = {**_MANAGER_DEFAULTS, **(manager_options or {})}
        self.manager = WSManager(url, registry=self.registry, metrics_name="relay", **options)
        self.registry.register(RelayCollector(self))
        on_gap = getattr(self.manager, "on_gap", None)
        if callable(on_gap):
            on_gap(self._on_gap)
        self._thread = threading.Thread(
            target=self._run, name=f"wsmanager-relay-{group}", daemon=True
        )
        self._thread.start()
        try:
            for name in names:
                self.add_stream(name)
        except BaseException:
            self.close()
            raise

    # -- streams -------------------------------------------------------------------------------

    def add_stream(self, stream: str) -> None:
        """Start relaying ``stream`` (no-op if it is relayed already)."""
        validate_stream_name(stream)
        with self._work:
            if self._closed:
                raise RuntimeError("the relay is closed")
            state = self._streams.get(stream)
            if state is not None and not state.removed:
                return
            if state is None:  # (a removed one still writing its buffer is taken back)
                key = make_stream_key(stream, self.key_prefix)
                state = RelayStream(stream, key, IdAssigner(stream), deque(maxlen=self.buffer_size))
                self._streams[stream] = state
            state.removed = False
            self._failed.pop(stream, None)
        state.unsubscribe = plain_subscribe(self.manager)(
            stream,
            lambda message: self._on_message(state, message),
            on_error=lambda error: self._on_stream_error(state, error),
        )

    def remove_stream(self, stream: str) -> None:
        """Stop relaying ``stream``; what it has buffered is still written."""
        with self._work:
            state = self._streams.get(stream)
            if state is None or state.removed:
                return
            state.removed = True
            unsubscribe = state.unsubscribe
            self._work.notify_all()
        if unsubscribe is not None:
            unsubscribe()

    @property
    def streams(self) -> list[str]:
        """The streams being relayed."""
        with self._work:
            return self._streams_now()

    def _streams_now(self) -> list[str]:
        # Caller holds _work.
        return [name for name, state in self._streams.items() if not state.removed]

    def key(self, stream: str) -> str:
        """The Redis key ``stream`` is written to."""
        return make_stream_key(stream, self.key_prefix)

    # -- the message path (manager callback threads): no lock unless the writer sleeps --------

    def _on_message(self, state: RelayStream, payload: Any) -> None:
        state.incoming.append(
            (encode_data(payload), state.ids.sequence_of(payload), time.time_ns() // 1_000_000)
        )
        state.received += 1
        if self._idle:
            with self._work:
                self._idle = False
                self._work.notify_all()

    def _on_stream_error(self, state: RelayStream, error: Exception) -> None:
        log.error("relay: stream %s failed for good: %s", state.name, error)
        with self._work:
            self._failed[state.name] = str(error)
            state.removed = True
            self._work.notify_all()

    def _on_gap(self, gap: Gap) -> None:
        with self._work:
            self._counts["exchange_gaps"] += 1
        log.warning(
            "relay: stream %s skipped from %d to %d at the exchange",
            gap.stream,
            gap.expected,
            gap.received,
        )

    @property
    def role(self) -> Role:
        with self._work:
            return self._current_role()

    def wait_for_role(self, role: Role | str, timeout: float) -> bool:
        """Wait until this relay is ``role`` (e.g. ``"active"``); False after ``timeout``."""
        wanted = Role(role)
        deadline = time.monotonic() + timeout
        with self._work:
            while self._current_role() is not wanted:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._work.wait(min(remaining, 0.1))
        return True

    def flush(self, timeout: float) -> bool:
        """Wait until every buffered entry has been written (or refused); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._work:
            while self._pending() or self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._work.wait(min(remaining, 0.05))
        return True

    # -- introspection -------------------------------------------------------------------------

    def get_metrics(self) -> RelayMetrics:
        with self._work:
            self._count_overflows()
            states = list(self._streams.values())
            values: dict[str, Any] = dict(
                self._counts,
                role=self._current_role().value,
                streams=len(self._streams_now()),
                redis_connected=self._connected,
                messages_received=self._received_by_removed + sum(s.received for s in states),
                buffered_entries=sum(s.buffered() for s in states) + self._in_flight,
                failed_streams=len(self._failed),
                internal_errors=self._internal_errors.count,
            )
        return RelayMetrics(**values)

    def get_stream_info(self) -> list[StreamInfo]:
        """The exchange side of each relayed stream (the manager's view)."""
        return self.manager.get_stream_info()

    def stream_counts(self) -> dict[str, tuple[int, int, int]]:
        """Per stream: (entries written or refused as already there, buffered, dropped)."""
        with self._work:
            self._count_overflows()
            return {
                name: (state.written, state.buffered(), state.dropped)
                for name, state in self._streams.items()
            }

    def get_prometheus_metrics(self) -> str:
        """The relay's metrics and its manager's, in the Prometheus text format."""
        return exposition(self.registry)

    def health(self) -> Health:
        """Unhealthy when closed, when Redis has been unreachable for longer than the lease, when
        a buffer is full (messages are being lost), or when the manager is unhealthy."""
        if self._closed:
            return Health(False, ["the relay was closed"])
        reasons: list[str] = []
        limit = max(self.lease_ttl, self._policy.max_delay)
        with self._work:
            since = self._disconnected_since
            role = self._current_role()
            full = [s.name for s in self._streams.values() if s.buffered() >= self.buffer_size]
            failed = dict(self._failed)
        if since is not None and time.monotonic() - since > limit:
            reasons.append(
                f"Redis at {redact_url(self.redis_url)} unreachable for "
                f"{time.monotonic() - since:.1f}s (more than {limit:g}s)"
            )
        if full and role is not Role.STANDBY:
            reasons.append(f"buffer full, dropping messages: {', '.join(sorted(full))}")
        for name, error in failed.items():
            reasons.append(f"stream {name!r} failed: {error}")
        reasons += self.manager.health().reasons
        return Health(not reasons, reasons)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop receiving, write what is buffered (for up to ``drain_timeout`` seconds), give
        the lease up so a standby takes over at once, and end the threads. Idempotent."""
        with self._work:
            if self._closed:
                return
            self._closed = True
        self.manager.destroy()
        with self._work:
            self._stopping = True
            self._work.notify_all()
            if not self._connected:  # nothing can be written: do not wait to drain
                self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(self._drain_timeout + 0.5)
            self._stop.set()
            self._thread.join()
        else:
            self._stop.set()
        self._client.close()

    def __repr__(self) -> str:
        return (
            f"<Relay {redact_url(self.redis_url)} group={self.group!r} {self.role.value}, "
            f"{len(self.streams)} stream(s)>"
        )


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _check_seconds(name: str, value: object, *, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
