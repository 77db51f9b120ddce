"""The relay client: ``subscribe`` over Redis Streams written by a :class:`~.relay.Relay`.

Two threads per client, whatever the number of streams: a reader that issues one ``XREAD
BLOCK`` over every subscribed key at a time, and a dispatcher that runs the callbacks (streams
take turns; a turn delivers what the stream has pending). Each stream remembers the id of the
last entry read; after a lost connection or a Redis restart the reader asks for what follows
that id, so nothing retained is lost and nothing is read twice. A stream whose callbacks lag
``max_buffered`` entries behind is left unread until they catch up: the entries wait in Redis,
and if retention trims them first, the jump is reported as a :class:`~wsmanager.Gap`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from ..backoff import BackoffPolicy
from ..config import redact_url, validate_stream_name
from ..core.state import Gap, Health
from ..errors import ManagerClosedError, RetriesExhaustedError, WSManagerError
from ..net._closing import ClosesOnExit
from .entries import (
    DEFAULT_KEY_PREFIX,
    EntryId,
    decode_data,
    format_id,
    parse_id,
    stream_key,
    validate_start,
)
from .exposition import RelayClientCollector, exposition, new_registry
from .redis_connection import connect, is_connection_error
from .state import RelayClientMetrics, RelayStreamInfo

__all__ = ["GapCallback", "RelayClient", "StreamKeyError", "Unsubscribe"]

log = logging.getLogger("wsmanager.relay")

Unsubscribe = Callable[[], None]
GapCallback = Callable[[Gap], object]


class StreamKeyError(WSManagerError):
    """A stream's Redis key holds something other than a stream (handed to ``on_error``)."""

    def __init__(self, stream: str, key: str, reason: str) -> None:
        super().__init__(f"stream {stream!r}: Redis key {key!r} {reason}")
        self.stream = stream
        self.key = key
        self.reason = reason


@dataclass(eq=False)
class _Subscriber:
    callback: Callable[[Any], object]
    on_error: Callable[[Exception], object] | None
    on_complete: Callable[[], object] | None
    active: bool = True


@dataclass(eq=False)
class _End:
    """The last item of a failed stream: tell these subscribers ``on_error(error)``."""

    error: Exception
    subscribers: tuple[_Subscriber, ...]


_Item = tuple[bytes, dict[bytes, bytes]] | Gap | _End


@dataclass(eq=False)
class _Stream:
    """One subscribed stream; every field is guarded by the client's ``_lock``."""

    name: str
    key: str
    cursor: EntryId | None  # the last entry read; None: "$", resolved by the reader
    check_gap: bool  # number the next read from Redis' counts (see _number)
    number: int | None = None  # the cursor's entry number (1 = the first ever added)
    subscribers: tuple[_Subscriber, ...] = ()
    pending: deque[_Item] = field(default_factory=deque)
    queued: bool = False  # in the dispatcher's ready queue
    paused: bool = False  # left unread: callbacks lag
    after_reconnect: bool = False
    entries_received: int = 0
    gaps: int = 0
    invalid_messages: int = 0
    callback_errors: int = 0


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
        self._block_ms = max(1, round(block * 1000))
        self._policy = BackoffPolicy(base_retry_delay, max_retry_delay)
        self._max_retry_attempts = max_retry_attempts
        self._rng = random.Random()
        self._client = connect(redis_url, redis_timeout)

        self._lock = threading.Condition(threading.Lock())  # guards everything below
        self._streams: dict[str, _Stream] = {}
        self._ready: deque[_Stream] = deque()
        self._gap_listeners: list[GapCallback] = []
        self._connected = False
        self._disconnected_since: float | None = None
        self._closed = False
        self._counts = dict.fromkeys(
            ("entries_received", "redis_errors", "reconnects", "backpressure_pauses"), 0
        )
        self._ended_counts = dict.fromkeys(("gaps", "invalid_messages", "callback_errors"), 0)
        self._stop = threading.Event()  # interrupts backoff waits

        self.registry = new_registry()
        self.registry.register(RelayClientCollector(self))
        self._reader = threading.Thread(
            target=self._read_loop, name="wsmanager-relay-client-reader", daemon=True
        )
        self._dispatcher = threading.Thread(
            target=self._dispatch_loop, name="wsmanager-relay-client-dispatch", daemon=True
        )
        self._reader.start()
        self._dispatcher.start()

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
        subscriber = _Subscriber(callback, on_error, on_complete)
        with self._lock:
            if self._closed:
                raise ManagerClosedError("the relay client is closed")
            state = self._streams.get(stream)
            if state is None:
                cursor = None if begin == "$" else _start_id(begin)
                state = _Stream(
                    stream,
                    stream_key(stream, self.key_prefix),
                    cursor,
                    check_gap=begin != "$",
                )
                self._streams[stream] = state
                self._lock.notify_all()
            elif start is not None:
                raise ValueError(
                    f"stream {stream!r} is already subscribed: start={start!r} applies only to "
                    "the first subscriber of a stream"
                )
            state.subscribers += (subscriber,)

        def unsubscribe() -> None:
            self._unsubscribe(state, subscriber)

        return unsubscribe

    def _unsubscribe(self, state: _Stream, subscriber: _Subscriber) -> None:
        with self._lock:
            subscriber.active = False
            if subscriber not in state.subscribers:
                return
            state.subscribers = tuple(s for s in state.subscribers if s is not subscriber)
            if not state.subscribers and self._streams.get(state.name) is state:
                self._retire(state)
                state.pending.clear()

    def _retire(self, state: _Stream) -> None:
        # Caller holds _lock: the stream leaves; its counters stay in the totals.
        del self._streams[state.name]
        for name in self._ended_counts:
            self._ended_counts[name] += getattr(state, name)

    def on_gap(self, callback: GapCallback) -> Unsubscribe:
        """Call ``callback(gap)`` (on the dispatch thread, in order with the messages) whenever
        entries were trimmed by retention before this client could read them.

        ``gap.expected`` and ``gap.received`` are entry numbers in the Redis stream (1 = the
        first entry ever added to it), so ``gap.missing`` is how many entries were lost."""
        _check_callable("callback", callback)
        with self._lock:
            self._gap_listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._gap_listeners:
                    self._gap_listeners.remove(callback)

        return unsubscribe

    # -- the reader thread ---------------------------------------------------------------------

    def _read_loop(self) -> None:
        failures = 0
        last_error: BaseException | None = None
        while True:
            with self._lock:
                while not self._closed and not self._streams:
                    self._lock.wait()
                if self._closed:
                    return
            if failures and self._stop.wait(self._policy.delay(failures - 1, self._rng)):
                return
            try:
                self._read_once()
            except redis.ResponseError as exc:
                self._fail_bad_keys(exc)
            except redis.RedisError as exc:
                failures += 1
                last_error = exc
                self._lost_redis(exc, failures)
                limit = self._max_retry_attempts
                if limit is not None and failures >= limit:
                    self._fail_all(functools.partial(_exhausted, failures, last_error))
                    failures = 0
                continue
            failures = 0

    def _read_once(self) -> None:
        with self._lock:
            unresolved = [s for s in self._streams.values() if s.cursor is None]
        if unresolved:
            self._resolve(unresolved)
        with self._lock:
            readable: dict[str, _Stream] = {}
            for state in self._streams.values():
                full = len(state.pending) >= self.max_buffered
                if full and not state.paused:
                    self._counts["backpressure_pauses"] += 1
                state.paused = full
                if not full and state.cursor is not None:
                    readable[state.key] = state
            if not readable:  # every stream lags: wait for the dispatcher
                self._lock.wait(self._block_ms / 1000)
                return
            cursors: dict[Any, Any] = {
                key: format_id(state.cursor or (0, 0)) for key, state in readable.items()
            }
        reply: Any = self._client.xread(cursors, count=self.count, block=self._block_ms)
        self._now_connected()
        if not reply:
            return
        batches: list[tuple[_Stream, EntryId, list[tuple[bytes, dict[bytes, bytes]]]]] = []
        for raw_key, entries in reply:
            reading = readable.get(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
            if reading is not None and entries:
                batches.append((reading, parse_id(cursors[reading.key]), entries))
        with self._lock:
            to_check = [b[0] for b in batches if b[0].check_gap or len(b[2]) >= self.count]
        infos = dict(zip(map(id, to_check), self._stream_infos(to_check), strict=True))
        with self._lock:
            for state, before, entries in batches:
                if self._streams.get(state.name) is not state or state.cursor != before:
                    continue  # unsubscribed (or subscribed anew) meanwhile
                if id(state) in infos:
                    gap = self._number(state, before, entries, infos[id(state)])
                    if gap is not None:
                        state.pending.append(gap)
                        state.gaps += 1
                elif state.number is not None:
                    state.number += len(entries)
                state.pending.extend(entries)
                state.cursor = parse_id(entries[-1][0])
                state.entries_received += len(entries)
                self._counts["entries_received"] += len(entries)
                if not state.queued:
                    state.queued = True
                    self._ready.append(state)
            self._lock.notify_all()

    def _stream_infos(self, states: list[_Stream]) -> list[dict[str, Any] | None]:
        """``XINFO STREAM`` of each (None: no such key)."""
        if not states:
            return []
        pipe = self._client.pipeline(transaction=False)
        for state in states:
            pipe.xinfo_stream(state.key)
        infos: list[dict[str, Any] | None] = []
        for info in pipe.execute(raise_on_error=False):
            if isinstance(info, redis.ResponseError) and "no such key" in str(info):
                infos.append(None)
            elif isinstance(info, Exception):
                raise info
            else:
                infos.append(info)
        return infos

    def _resolve(self, states: list[_Stream]) -> None:
        """``$``: start after the newest entry now; its number is the count of entries added."""
        infos = self._stream_infos(states)
        self._now_connected()
        with self._lock:
            for state, info in zip(states, infos, strict=True):
                if state.cursor is not None:
                    continue
                if info is None:
                    state.cursor, state.number = (0, 0), 0
                else:
                    state.cursor = parse_id(info["last-generated-id"])
                    added = info.get("entries-added")  # Redis 7+
                    state.number = int(added) if added is not None else None

    def _number(
        self,
        state: _Stream,
        before: EntryId,
        entries: list[tuple[bytes, dict[bytes, bytes]]],
        info: dict[str, Any] | None,
    ) -> Gap | None:
        """Number the entries just read from the stream's count of entries ever added (Redis
        7+), read right after them; a jump past the last number read is a gap. Caller holds
        _lock."""
        known, state.number = state.number, None
        after_reconnect, state.after_reconnect = state.after_reconnect, False
        state.check_gap = False
        first = info.get("first-entry") if info is not None else None
        deleted = info.get("max-deleted-entry-id") if info is not None else None
        if info is None or first is None or first[0] is None or deleted is None:
            return None  # gone, empty, or Redis < 7: cannot number
        if parse_id(deleted) != (0, 0):
            return None  # entries were removed with XDEL: counting from the head is wrong
        head = parse_id(first[0])
        if head <= before:  # the last entry read is still there: nothing was skipped
            state.number = None if known is None else known + len(entries)
            return None
        ids = [parse_id(entry_id) for entry_id, _ in entries]
        if head not in ids:  # trimmed past this whole read meanwhile: decide next time
            state.check_gap = True
            return None
        first_number = int(info["entries-added"]) - int(info["length"]) + 1 - ids.index(head)
        state.number = first_number + len(entries) - 1
        if known is not None and first_number > known + 1:
            return Gap(state.name, known + 1, first_number, after_reconnect)
        return None

    def _now_connected(self) -> None:
        with self._lock:
            if self._connected:
                return
            reconnect = self._disconnected_since is not None
            self._connected = True
            self._disconnected_since = None
            if reconnect:
                self._counts["reconnects"] += 1
                for state in self._streams.values():
                    if state.cursor is not None:
                        state.check_gap = True
                        state.after_reconnect = True
        if reconnect:
            log.warning("relay client: Redis at %s is reachable again", redact_url(self.redis_url))

    def _lost_redis(self, exc: Exception, failures: int) -> None:
        with self._lock:
            self._counts["redis_errors"] += 1
            first = self._connected or self._disconnected_since is None
            if first:
                self._disconnected_since = time.monotonic()
            self._connected = False
        (log.warning if first else log.debug)(
            "relay client: Redis at %s: %s (attempt %d)", redact_url(self.redis_url), exc, failures
        )
        if not is_connection_error(exc):
            log.error("relay client: unexpected Redis error: %r", exc)
        self._client.connection_pool.disconnect()

    def _fail_bad_keys(self, exc: redis.ResponseError) -> None:
        """A read refused as a whole: find the keys that are not streams and fail them."""
        with self._lock:
            states = list(self._streams.values())
        try:
            pipe = self._client.pipeline(transaction=False)
            for state in states:
                pipe.type(state.key)
            kinds = pipe.execute()
        except redis.RedisError:
            log.error("relay client: a read failed: %s", exc)
            return
        bad = {
            state.name: kind.decode() if isinstance(kind, bytes) else str(kind)
            for state, kind in zip(states, kinds, strict=True)
            if kind not in (b"stream", b"none", "stream", "none")
        }
        if not bad:
            log.error("relay client: a read failed: %s", exc)
            self._stop.wait(self._policy.max_delay)
            return
        self._fail_all(
            lambda name: StreamKeyError(
                name, stream_key(name, self.key_prefix), f"holds a {bad[name]}, not a stream"
            ),
            only=set(bad),
        )

    def _fail_all(
        self, make_error: Callable[[str], Exception], only: set[str] | None = None
    ) -> None:
        with self._lock:
            for state in list(self._streams.values()):
                if only is not None and state.name not in only:
                    continue
                error = make_error(state.name)
                log.error("relay client: %s", error)
                self._retire(state)
                state.pending.clear()
                state.pending.append(_End(error, state.subscribers))
                if not state.queued:
                    state.queued = True
                    self._ready.append(state)
            self._lock.notify_all()

    # -- the dispatch thread -------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self._closed:
                    self._lock.wait()
                if self._closed:
                    break
                state = self._ready.popleft()
                state.queued = False
                items = list(state.pending)
                state.pending.clear()
                subscribers = state.subscribers
                listeners = tuple(self._gap_listeners)
                if state.paused:
                    self._lock.notify_all()  # the reader may read it again
            invalid, errors = self._deliver(state.name, items, subscribers, listeners)
            if invalid or errors:
                with self._lock:
                    state.invalid_messages += invalid
                    state.callback_errors += errors
                    if self._streams.get(state.name) is not state:
                        self._ended_counts["invalid_messages"] += invalid
                        self._ended_counts["callback_errors"] += errors
        self._complete_all()

    def _deliver(
        self,
        stream: str,
        items: list[_Item],
        subscribers: tuple[_Subscriber, ...],
        listeners: tuple[GapCallback, ...],
    ) -> tuple[int, int]:
        invalid = errors = 0
        for item in items:
            if isinstance(item, tuple):
                try:
                    message = decode_data(item[1][b"data"])
                except (KeyError, ValueError) as exc:
                    invalid += 1
                    log.warning(
                        "relay client: stream %s: entry %r skipped: %r", stream, item[0], exc
                    )
                    continue
                for subscriber in subscribers:
                    if not subscriber.active:
                        continue
                    try:
                        subscriber.callback(message)
                    except Exception:
                        errors += 1
                        log.exception("relay client: stream %s: a callback raised", stream)
            elif isinstance(item, Gap):
                log.warning(
                    "relay client: stream %s: entries trimmed by retention were never read "
                    "(ids %d... to %d...)",
                    stream,
                    item.expected,
                    item.received,
                )
                for listener in listeners:
                    _call_quietly(stream, listener, item)
            else:
                for subscriber in item.subscribers:
                    if subscriber.active and subscriber.on_error is not None:
                        subscriber.active = False
                        _call_quietly(stream, subscriber.on_error, item.error)
        return invalid, errors

    def _complete_all(self) -> None:
        with self._lock:
            states = list(self._streams.values())
            for state in states:
                self._retire(state)
                state.pending.clear()
        for state in states:
            for subscriber in state.subscribers:
                if subscriber.active and subscriber.on_complete is not None:
                    subscriber.active = False
                    _call_quietly(state.name, subscriber.on_complete)

    # -- introspection -------------------------------------------------------------------------

    def get_metrics(self) -> RelayClientMetrics:
        with self._lock:
            streams = list(self._streams.values())
            totals = dict(self._ended_counts)
            for state in streams:
                for name in totals:
                    totals[name] += getattr(state, name)
            return RelayClientMetrics(
                streams=len(streams),
                subscribers=sum(len(s.subscribers) for s in streams),
                redis_connected=self._connected,
                entries_received=self._counts["entries_received"],
                invalid_messages=totals["invalid_messages"],
                callback_errors=totals["callback_errors"],
                gaps=totals["gaps"],
                buffered_messages=sum(len(s.pending) for s in streams),
                redis_errors=self._counts["redis_errors"],
                reconnects=self._counts["reconnects"],
                backpressure_pauses=self._counts["backpressure_pauses"],
            )

    def get_stream_info(self) -> list[RelayStreamInfo]:
        with self._lock:
            return [
                RelayStreamInfo(
                    name=s.name,
                    key=s.key,
                    subscribers=len(s.subscribers),
                    last_id=format_id(s.cursor) if s.cursor is not None else None,
                    entries_received=s.entries_received,
                    buffered_messages=len(s.pending),
                    gaps=s.gaps,
                    invalid_messages=s.invalid_messages,
                    callback_errors=s.callback_errors,
                )
                for s in self._streams.values()
            ]

    def get_prometheus_metrics(self) -> str:
        return exposition(self.registry)

    def health(self) -> Health:
        """Unhealthy when closed, or when Redis has been unreachable for longer than
        ``max_retry_delay`` while streams are subscribed."""
        with self._lock:
            if self._closed:
                return Health(False, ["the relay client was closed"])
            since = self._disconnected_since
            active = bool(self._streams)
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
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify_all()
        self._stop.set()
        current = threading.current_thread()
        for thread in (self._reader, self._dispatcher):
            if thread is not current:
                thread.join()
        self._client.close()

    def __repr__(self) -> str:
        with self._lock:
            streams = len(self._streams)
            state = "closed" if self._closed else "open"
        return f"<RelayClient {redact_url(self.redis_url)} {state}, {streams} stream(s)>"


def _start_id(start: str) -> EntryId:
    return parse_id(start if "-" in start else f"{start}-0")


def _exhausted(attempts: int, error: BaseException | None, stream: str) -> Exception:
    return RetriesExhaustedError(stream, attempts, error)


def _check_callable(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def _call_quietly(stream: str, function: Callable[..., object], *args: object) -> None:
    try:
        function(*args)
    except Exception:
        log.exception(
            "relay client: stream %s: an on_error/on_complete/on_gap callback raised", stream
        )
