"""The relay client: ``subscribe`` over Redis Streams written by a :class:`~.relay.Relay`.

Two threads per client, whatever the number of streams: a reader that issues one ``XREAD
BLOCK`` over every subscribed key at a time (:mod:`.reading`), and the callback thread of a
:class:`~wsmanager.core.delivery.DeliveryLoop` — the manager's delivery engine: streams take
turns, each stream's buffer is bounded, and whatever a callback raises (``SystemExit``
included) is logged and counted while the thread goes on. A stream whose callbacks lag
``max_buffered`` entries behind is left unread until they catch up: the entries wait in Redis.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..backoff import BackoffPolicy
from ..config import redact_url, validate_stream_name
from ..core.delivery import DeliveryLoop, Ending, StreamFeed, Subscription
from ..core.state import Gap, Health
from ..errors import ManagerClosedError
from ..net._closing import ClosesOnExit
from .entries import DEFAULT_KEY_PREFIX, EntryId, format_id, parse_id, stream_key, validate_start
from .exposition import RelayClientCollector, exposition, new_registry
from .reading import RelayReader, RelayStream, StreamKeyError
from .redis_connection import connect
from .state import RelayClientMetrics, RelayStreamInfo

__all__ = ["GapCallback", "RelayClient", "StreamKeyError", "Unsubscribe"]

Unsubscribe = Callable[[], None]
GapCallback = Callable[[Gap], object]

_ENDED = ("gaps", "invalid_messages", "callback_errors")


class RelayClient(ClosesOnExit):
    """Subscribe to streams a relay writes into Redis at ``redis_url``.

    ``start`` is where a new stream begins: ``"$"`` (entries written from now on), ``"0"``
    (the oldest retained) or an entry id (what follows it). ``count`` caps the entries one read
    returns per stream; ``block`` is how long one read waits for new entries (the reader also
    notices new subscriptions then). ``max_retry_attempts=None`` retries forever.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        start: str = "$",
        # Reading
        count: int = 1000,
        block: float = 0.1,
        max_buffered: int = 10_000,
        # Redis connection
        redis_timeout: float = 5.0,
        base_retry_delay: float = 0.1,
        max_retry_delay: float = 5.0,
        max_retry_attempts: int | None = None,
    ) -> None:
        self.start = validate_start(start)
        for name, value in (("count", count), ("max_buffered", max_buffered)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if max_retry_attempts is not None and (
            isinstance(max_retry_attempts, bool)
            or not isinstance(max_retry_attempts, int)
            or max_retry_attempts < 1
        ):
            raise ValueError(f"max_retry_attempts must be None or >= 1, got {max_retry_attempts!r}")
        for name, seconds in (
            ("block", block),
            ("redis_timeout", redis_timeout),
            ("base_retry_delay", base_retry_delay),
            ("max_retry_delay", max_retry_delay),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {seconds!r}")
        if block >= redis_timeout:
            raise ValueError(
                f"block ({block}) must be shorter than redis_timeout ({redis_timeout})"
            )
        if max_retry_delay < base_retry_delay:
            raise ValueError(
                f"max_retry_delay ({max_retry_delay}) must be >= base_retry_delay "
                f"({base_retry_delay})"
            )
        self.redis_url = redis_url
        self.key_prefix = key_prefix
        self.count = count
        self.max_buffered = max_buffered
        self._policy = BackoffPolicy(base_retry_delay, max_retry_delay)
        self._client = connect(redis_url, redis_timeout)
        self._gap_listeners: tuple[GapCallback, ...] = ()
        self._loop = DeliveryLoop("relay-client", lambda: self._gap_listeners)
        self._reader = RelayReader(
            self._client,
            redis_url,
            count=count,
            block=block,
            max_buffered=max_buffered,
            policy=self._policy,
            max_retry_attempts=max_retry_attempts,
            fail=self._fail,
        )
        self._lock = self._reader.lock  # guards the reader's streams and the fields below
        self._ended_counts = dict.fromkeys(_ENDED, 0)
        self.registry = new_registry()
        self.registry.register(RelayClientCollector(self))
        self._reader.thread.start()

    # -- subscriptions -------------------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        callback: Callable[[Any], object],
        on_error: Callable[[Exception], object] | None = None,
        on_complete: Callable[[], object] | None = None,
        *,
        start: str | None = None,
    ) -> Unsubscribe:
        """Call ``callback(message)`` with each message of ``stream`` read from Redis.

        Subscribers of one stream share its reads. ``start`` (default: the client's) applies
        to the first subscriber of a stream. Returns an idempotent ``unsubscribe()`` that is
        safe from any thread, callbacks included.
        """
        validate_stream_name(stream)
        _check_callable("callback", callback)
        _check_callable("on_error", on_error, optional=True)
        _check_callable("on_complete", on_complete, optional=True)
        begin = validate_start(start) if start is not None else self.start
        subscription = Subscription(stream, callback, on_error, on_complete)
        reader = self._reader
        with self._lock:
            if reader.closed:
                raise ManagerClosedError("the relay client is closed")
            state = reader.streams.get(stream)
            if state is None:
                feed = StreamFeed(
                    stream,
                    self._loop,
                    # The reader stops reading at max_buffered; one read (count) may follow.
                    capacity=self.max_buffered + self.count + 1,
                    max_bytes=sys.maxsize,
                    rule=None,
                )
                feed.attach(reader)
                state = RelayStream(
                    stream,
                    stream_key(stream, self.key_prefix),
                    None if begin == "$" else _start_id(begin),
                    check_gap=begin != "$",
                    feed=feed,
                )
                reader.streams[stream] = state
                self._lock.notify_all()
            elif start is not None:
                raise ValueError(
                    f"stream {stream!r} is already subscribed: start={start!r} applies only to "
                    "the first subscriber of a stream"
                )
            state.feed.subscribers += (subscription,)

        def unsubscribe() -> None:
            self._unsubscribe(state, subscription)

        return unsubscribe

    def _unsubscribe(self, state: RelayStream, subscription: Subscription) -> None:
        feed = state.feed
        with self._lock:
            if subscription not in feed.subscribers:
                return
            subscription.deactivate()
            feed.subscribers = tuple(s for s in feed.subscribers if s is not subscription)
            last = not feed.subscribers and self._retire(state)
        if last:
            feed.finish(Ending.UNSUBSCRIBED)

    def _retire(self, state: RelayStream) -> bool:
        """Caller holds the lock: the stream leaves (True if it was still here); its counters
        stay in the totals."""
        if self._reader.streams.get(state.name) is not state:
            return False
        del self._reader.streams[state.name]
        for name, value in _counts(state).items():
            self._ended_counts[name] += value
        return True

    def _fail(self, failed: list[tuple[RelayStream, Exception]]) -> None:
        """The reader gave these streams up: their subscribers get ``on_error``."""
        ending: list[tuple[RelayStream, Exception, tuple[Subscription, ...]]] = []
        with self._lock:
            for state, error in failed:
                if self._retire(state):
                    ending.append((state, error, state.feed.subscribers))
        for state, error, subscribers in ending:
            state.feed.finish(Ending.FAILED, subscribers, error)

    def on_gap(self, callback: GapCallback) -> Unsubscribe:
        """Call ``callback(gap)`` (on the callback thread, in order with the messages) whenever
        entries were trimmed by retention before this client could read them.

        ``gap.expected`` and ``gap.received`` are entry numbers in the Redis stream (1 = the
        first entry ever added to it), so ``gap.missing`` is how many entries were lost."""
        _check_callable("callback", callback)
        with self._lock:
            self._gap_listeners += (callback,)

        def unsubscribe() -> None:
            with self._lock:
                listeners = list(self._gap_listeners)
                if callback in listeners:
                    listeners.remove(callback)
                    self._gap_listeners = tuple(listeners)

        return unsubscribe

    # -- introspection -------------------------------------------------------------------------

    def get_metrics(self) -> RelayClientMetrics:
        reader = self._reader
        with self._lock:
            streams = list(reader.streams.values())
            totals = dict(self._ended_counts)
            for state in streams:
                for name, value in _counts(state).items():
                    totals[name] += value
            return RelayClientMetrics(
                streams=len(streams),
                subscribers=sum(len(s.feed.subscribers) for s in streams),
                redis_connected=reader.connected,
                entries_received=reader.counts["entries_received"],
                invalid_messages=totals["invalid_messages"],
                callback_errors=totals["callback_errors"],
                gaps=totals["gaps"],
                buffered_messages=sum(s.feed.buffered() for s in streams),
                redis_errors=reader.counts["redis_errors"],
                reconnects=reader.counts["reconnects"],
                backpressure_pauses=reader.counts["backpressure_pauses"],
            )

    def get_stream_info(self) -> list[RelayStreamInfo]:
        with self._lock:
            return [
                RelayStreamInfo(
                    name=s.name,
                    key=s.key,
                    subscribers=len(s.feed.subscribers),
                    last_id=format_id(s.cursor) if s.cursor is not None else None,
                    entries_received=s.entries_received,
                    buffered_messages=s.feed.buffered(),
                    gaps=s.feed.gaps,
                    invalid_messages=s.invalid_messages,
                    callback_errors=s.feed.callback_errors,
                )
                for s in self._reader.streams.values()
            ]

    def get_prometheus_metrics(self) -> str:
        return exposition(self.registry)

    def health(self) -> Health:
        """Unhealthy when closed, or when Redis has been unreachable for longer than
        ``max_retry_delay`` while streams are subscribed."""
        reader = self._reader
        with self._lock:
            if reader.closed:
                return Health(False, ["the relay client was closed"])
            since = reader.disconnected_since
            active = bool(reader.streams)
        limit = self._policy.max_delay
        if active and since is not None and time.monotonic() - since > limit:
            return Health(
                False,
                [
                    f"Redis at {redact_url(self.redis_url)} unreachable for "
                    f"{time.monotonic() - since:.1f}s (more than max_retry_delay, {limit:g}s)"
                ],
            )
        return Health(True, [])

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, tell every subscriber ``on_complete``, and end both threads (except
        the calling one, when called from a callback). Idempotent."""
        reader = self._reader
        with self._lock:
            if reader.closed:
                return
            reader.closed = True
            self._lock.notify_all()
        reader.stop.set()
        current = threading.current_thread()
        if reader.thread is not current:
            reader.thread.join()
        with self._lock:
            states = list(reader.streams.values())
            for state in states:
                self._retire(state)
        for state in states:
            state.feed.finish(Ending.COMPLETED, state.feed.subscribers)
        self._loop.close()
        thread = self._loop.thread
        if thread is not None and thread is not current:
            thread.join()
        self._client.close()

    def __repr__(self) -> str:
        with self._lock:
            streams = len(self._reader.streams)
            state = "closed" if self._reader.closed else "open"
        return f"<RelayClient {redact_url(self.redis_url)} {state}, {streams} stream(s)>"


def _counts(state: RelayStream) -> dict[str, int]:
    return {
        "gaps": state.feed.gaps,
        "invalid_messages": state.invalid_messages,
        "callback_errors": state.feed.callback_errors,
    }


def _start_id(start: str) -> EntryId:
    return parse_id(start if "-" in start else f"{start}-0")


def _check_callable(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
