"""The relay client's reader: one thread, one ``XREAD BLOCK`` over every subscribed key at a time.

Each stream remembers the id of the last entry read; after a lost connection or a Redis restart
the reader asks for what follows that id, so nothing retained is lost and nothing is read twice.
It decodes each entry (a failure of any kind — malformed JSON, bad UTF-8, a document nested
100,000 deep — counts the entry as invalid, and the stream goes on) and offers the message to
the stream's :class:`~wsmanager.core.delivery.StreamFeed`: the callbacks run on the client's
:class:`~wsmanager.core.delivery.DeliveryLoop`, the manager's delivery engine. A stream whose
feed holds ``max_buffered`` entries is left unread until its callbacks catch up: the entries wait
in Redis, and if retention trims them first, the jump is reported as a :class:`~wsmanager.Gap`.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from ..backoff import BackoffPolicy
from ..config import redact_url
from ..core.delivery import StreamFeed
from ..core.state import Gap
from ..errors import RetriesExhaustedError, WSManagerError
from . import entries
from .entries import EntryId, format_id, parse_id
from .redis_connection import is_connection_error

__all__ = ["RelayReader", "RelayStream", "StreamKeyError"]

log = logging.getLogger("wsmanager.relay")

_Entry = tuple[bytes, dict[bytes, bytes]]
_EPOCH = object()  # one source, one epoch: the feed's reconnect flag is not used here


class StreamKeyError(WSManagerError):
    """A stream's Redis key holds something other than a stream (handed to ``on_error``)."""

    def __init__(self, stream: str, key: str, reason: str) -> None:
        super().__init__(f"stream {stream!r}: Redis key {key!r} {reason}")
        self.stream = stream
        self.key = key
        self.reason = reason


@dataclass(eq=False)
class RelayStream:
    """One subscribed stream; every field is guarded by the reader's ``lock``."""

    name: str
    key: str
    cursor: EntryId | None  # the last entry read; None: "$", resolved by the reader
    check_gap: bool  # number the next read from Redis' counts (see _number)
    feed: StreamFeed
    number: int | None = None  # the cursor's entry number (1 = the first ever added)
    paused: bool = False  # left unread: callbacks lag
    after_reconnect: bool = False
    entries_received: int = 0
    invalid_messages: int = 0


class RelayReader:
    """Reads every stream in ``streams`` (the client adds and removes them under ``lock``)."""

    def __init__(
        self,
        client: Any,  # redis.Redis
        redis_url: str,
        *,
        count: int,
        block: float,
        max_buffered: int,
        policy: BackoffPolicy,
        max_retry_attempts: int | None,
        fail: Callable[[list[tuple[RelayStream, Exception]]], None],
    ) -> None:
        self.client = client
        self.redis_url = redis_url
        self.count = count
        self.max_buffered = max_buffered
        self._block_ms = max(1, round(block * 1000))
        self._policy = policy
        self._max_retry_attempts = max_retry_attempts
        self._fail = fail  # the client ends failed streams (outside the lock)
        self._rng = random.Random()
        self.lock = threading.Condition(threading.Lock())  # guards everything below
        self.streams: dict[str, RelayStream] = {}
        self.connected = False
        self.disconnected_since: float | None = None
        self.closed = False
        self.counts = dict.fromkeys(
            ("entries_received", "redis_errors", "reconnects", "backpressure_pauses"), 0
        )
        self.stop = threading.Event()  # interrupts backoff waits
        self.thread = threading.Thread(
            target=self._run, name="wsmanager-relay-client-reader", daemon=True
        )

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        last_error: BaseException | None = None
        while True:
            with self.lock:
                while not self.closed and not self.streams:
                    self.lock.wait()
                if self.closed:
                    return
            if failures and self.stop.wait(self._policy.delay(failures - 1, self._rng)):
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
            except BaseException:  # a bug of ours: report it, wait, go on (never a silent end)
                log.exception("relay client: the reader failed; retrying")
                failures += 1
                continue
            failures = 0

    def _read_once(self) -> None:
        with self.lock:
            unresolved = [s for s in self.streams.values() if s.cursor is None]
        if unresolved:
            self._resolve(unresolved)
        with self.lock:
            readable: dict[str, RelayStream] = {}
            for state in self.streams.values():
                full = state.feed.buffered() >= self.max_buffered
                if full and not state.paused:
                    self.counts["backpressure_pauses"] += 1
                state.paused = full
                if not full and state.cursor is not None:
                    readable[state.key] = state
            if not readable:  # every stream lags: look again soon
                self.lock.wait(self._block_ms / 1000)
                return
            cursors: dict[Any, Any] = {
                key: format_id(state.cursor or (0, 0)) for key, state in readable.items()
            }
        reply: Any = self.client.xread(cursors, count=self.count, block=self._block_ms)
        self._now_connected()
        if not reply:
            return
        batches: list[tuple[RelayStream, EntryId, list[_Entry]]] = []
        for raw_key, read in reply:
            reading = readable.get(raw_key.decode() if isinstance(raw_key, bytes) else raw_key)
            if reading is not None and read:
                batches.append((reading, parse_id(cursors[reading.key]), read))
        with self.lock:
            to_check = [b[0] for b in batches if b[0].check_gap or len(b[2]) >= self.count]
        infos = dict(zip(map(id, to_check), self._stream_infos(to_check), strict=True))
        offers: list[tuple[RelayStream, Gap | None, list[_Entry]]] = []
        with self.lock:
            for state, before, read in batches:
                if self.streams.get(state.name) is not state or state.cursor != before:
                    continue  # unsubscribed (or subscribed anew) meanwhile
                gap = None
                if id(state) in infos:
                    gap = self._number(state, before, read, infos[id(state)])
                elif state.number is not None:
                    state.number += len(read)
                state.cursor = parse_id(read[-1][0])
                state.entries_received += len(read)
                self.counts["entries_received"] += len(read)
                offers.append((state, gap, read))
        for state, gap, read in offers:  # one reader: each stream's order is kept
            self._offer(state, gap, read)

    def _offer(self, state: RelayStream, gap: Gap | None, read: list[_Entry]) -> None:
        feed = state.feed
        if gap is not None:
            log.warning(
                "relay client: stream %s: entries trimmed by retention were never read "
                "(numbers %d to %d)",
                state.name,
                gap.expected,
                gap.received - 1,
            )
            feed.add_gap(gap)
        invalid = 0
        for entry_id, fields in read:
            data = fields.get(b"data")
            try:
                if data is None:
                    raise KeyError("no 'data' field")
                message = entries.decode_data(data)
            except BaseException as exc:  # RecursionError, UnicodeDecodeError, MemoryError...
                invalid += 1
                log.warning(
                    "relay client: stream %s: entry %s skipped: %s",
                    state.name,
                    entry_id.decode(errors="replace"),
                    _short(exc),
                )
                continue
            feed.offer(self, _EPOCH, message, len(data))
        if invalid:
            with self.lock:
                state.invalid_messages += invalid

    def _stream_infos(self, states: list[RelayStream]) -> list[dict[str, Any] | None]:
        """``XINFO STREAM`` of each (None: no such key)."""
        if not states:
            return []
        pipe = self.client.pipeline(transaction=False)
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

    def _resolve(self, states: list[RelayStream]) -> None:
        """``$``: start after the newest entry now; its number is the count of entries added."""
        infos = self._stream_infos(states)
        self._now_connected()
        with self.lock:
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
        state: RelayStream,
        before: EntryId,
        read: list[_Entry],
        info: dict[str, Any] | None,
    ) -> Gap | None:
        """Number the entries just read from the stream's count of entries ever added (Redis
        7+), read right after them; a jump past the last number read is a gap. Caller holds
        the lock."""
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
            state.number = None if known is None else known + len(read)
            return None
        ids = [parse_id(entry_id) for entry_id, _ in read]
        if head not in ids:  # trimmed past this whole read meanwhile: decide next time
            state.check_gap = True
            return None
        first_number = int(info["entries-added"]) - int(info["length"]) + 1 - ids.index(head)
        state.number = first_number + len(read) - 1
        if known is not None and first_number > known + 1:
            return Gap(state.name, known + 1, first_number, after_reconnect)
        return None

    # -- Redis up and down -----------------------------------------------------------------------

    def _now_connected(self) -> None:
        with self.lock:
            if self.connected:
                return
            reconnect = self.disconnected_since is not None
            self.connected = True
            self.disconnected_since = None
            if reconnect:
                self.counts["reconnects"] += 1
                for state in self.streams.values():
                    if state.cursor is not None:
                        state.check_gap = True
                        state.after_reconnect = True
        if reconnect:
            log.warning("relay client: Redis at %s is reachable again", redact_url(self.redis_url))

    def _lost_redis(self, exc: Exception, failures: int) -> None:
        with self.lock:
            self.counts["redis_errors"] += 1
            first = self.connected or self.disconnected_since is None
            if first:
                self.disconnected_since = time.monotonic()
            self.connected = False
        (log.warning if first else log.debug)(
            "relay client: Redis at %s: %s (attempt %d)",
            redact_url(self.redis_url),
            _short(exc),
            failures,
        )
        if not is_connection_error(exc):
            log.error("relay client: unexpected Redis error: %s", _short(exc))
        self.client.connection_pool.disconnect()

    def _fail_bad_keys(self, exc: redis.ResponseError) -> None:
        """A read refused as a whole: find the keys that are not streams and fail them."""
        with self.lock:
            states = list(self.streams.values())
        try:
            pipe = self.client.pipeline(transaction=False)
            for state in states:
                pipe.type(state.key)
            kinds = pipe.execute()
        except redis.RedisError:
            log.error("relay client: a read failed: %s", _short(exc))
            return
        bad = {
            state.name: kind.decode() if isinstance(kind, bytes) else str(kind)
            for state, kind in zip(states, kinds, strict=True)
            if kind not in (b"stream", b"none", "stream", "none")
        }
        if not bad:
            log.error("relay client: a read failed: %s", _short(exc))
            self.stop.wait(self._policy.max_delay)
            return
        self._fail_all(
            lambda state: StreamKeyError(
                state.name, state.key, f"holds a {bad[state.name]}, not a stream"
            ),
            only=set(bad),
        )

    def _fail_all(
        self, make_error: Callable[[RelayStream], Exception], only: set[str] | None = None
    ) -> None:
        with self.lock:
            failed = [
                (state, make_error(state))
                for state in self.streams.values()
                if only is None or state.name in only
            ]
        for _, error in failed:
            log.error("relay client: %s", error)
        self._fail(failed)


def _exhausted(attempts: int, error: BaseException | None, state: RelayStream) -> Exception:
    return RetriesExhaustedError(state.name, attempts, error)


def _short(exc: BaseException) -> str:
    """An exception for a log line: its type and at most 200 characters of its text (a decoder's
    message can quote the whole entry; redis-py's can quote a URL: redacted)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
