"""The relay's writer: one thread that moves what the exchange sent into Redis.

Each relayed stream's messages wait in its bounded ``incoming`` deque (appended by the manager's
callback threads, oldest dropped when full). The writer gives each message its entry id (see
:mod:`.entries`), keeps the group's lease (:mod:`.lease`), writes batches with one fenced
script call each, and reconnects with full-jitter backoff when Redis is away. A relay that does
not hold the lease is a hot standby: it keeps the latest ``buffer_size`` messages per stream, so
that when it takes over it writes what the active relay had not written, and leaves out (by id,
or by content) what it had. Whatever else goes wrong in a round (a bug) is logged and counted,
and the writer goes on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from ..backoff import BackoffPolicy
from ..config import redact_url
from ..core.usercode import ErrorCounter, user_code_raised
from .entries import Entry, EntryId, IdAssigner, parse_id
from .lease import FencedWriter, Lease, LeaseResult, lease_key
from .redis_connection import connect, is_connection_error
from .state import Role

__all__ = ["RelayStream", "RelayWriter"]

log = logging.getLogger("wsmanager.relay")

_Incoming = tuple[bytes, object, int]  # (data, sequence number or None, receive ms)


@dataclass(eq=False)
class RelayStream:
    """One relayed stream. ``incoming`` and ``received`` belong to the stream's callback
    thread (appends) and the writer (pops); everything else to the writer, or to ``_work``."""

    name: str
    key: str
    ids: IdAssigner
    incoming: deque[_Incoming]
    received: int = 0  # messages appended to incoming (callback thread)
    taken: int = 0  # messages popped from incoming (writer)
    overflowed: int = 0  # incoming's overflows already counted (writer, under _work)
    ready: deque[Entry] = field(default_factory=deque)  # with ids, not written yet (writer)
    last_written: EntryId = (0, 0)  # the highest id this relay knows to be in Redis
    watch: bytes | None = None  # after a takeover without a match: the other relay's last data
    watch_until: float = 0.0
    written: int = 0
    dropped: int = 0
    removed: bool = False  # unsubscribed or failed: leaves once its buffer is written
    unsubscribe: Callable[[], None] | None = None

    def buffered(self) -> int:
        return len(self.incoming) + len(self.ready)


class RelayWriter:
    """The writer thread of a :class:`~.relay.Relay` and the state it shares with the relay's
    callbacks (guarded by ``_work``)."""

    def __init__(
        self,
        redis_url: str,
        *,
        maxlen: int,
        key_prefix: str,
        group: str,
        lease_ttl: float,
        buffer_size: int,
        batch_size: int,
        redis_timeout: float,
        policy: BackoffPolicy,
        drain_timeout: float,
    ) -> None:
        self.redis_url = redis_url
        self.maxlen = maxlen
        self.key_prefix = key_prefix
        self.group = group
        self.lease_ttl = lease_ttl
        self.buffer_size = buffer_size
        self.batch_size = batch_size
        self._policy = policy
        self._drain_timeout = drain_timeout
        self._renew_interval = lease_ttl / 3
        self._poll_interval = max(0.02, lease_ttl / 10)
        self._rng = random.Random()

        self._client = connect(redis_url, redis_timeout)
        self._lease = Lease(self._client, lease_key(group, key_prefix), lease_ttl)
        self._writer = FencedWriter(self._client, self._lease.key, self._lease.token, maxlen)

        # Guarded by _work (the writer waits on it; callbacks notify it only when it is idle).
        self._work = threading.Condition(threading.Lock())
        self._idle = False  # the writer waits for messages
        self._streams: dict[str, RelayStream] = {}
        self._in_flight = 0  # entries being written
        self._role = Role.UNKNOWN
        self._lease_valid_until = 0.0
        self._connected = False
        self._disconnected_since: float | None = time.monotonic()
        self._stopping = False
        self._closed = False
        self._failed: dict[str, str] = {}
        self._counts = dict.fromkeys(
            (
                "entries_written",
                "duplicates_skipped",
                "dropped_entries",
                "standby_trimmed",
                "write_errors",
                "redis_errors",
                "redis_reconnects",
                "lease_acquisitions",
                "lease_losses",
                "exchange_gaps",
            ),
            0,
        )
        self._received_by_removed = 0
        self._stop = threading.Event()  # interrupts the writer's waits that are not on _work

        self._internal_errors = ErrorCounter()  # rounds of the writer that failed (a bug)

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        next_lease_check = 0.0
        drain_deadline: float | None = None
        while True:
            with self._work:
                stopping = self._stopping
                self._count_overflows()
            if stopping:
                if drain_deadline is None:
                    drain_deadline = time.monotonic() + self._drain_timeout
                if not self._should_drain(drain_deadline):
                    break
            if not self._connected:
                if failures and self._stop.wait(self._policy.delay(failures - 1, self._rng)):
                    if drain_deadline is not None:
                        break
                    continue
                if not self._try_connect():
                    failures += 1
                    continue
                next_lease_check = 0.0
            batch: list[tuple[RelayStream, list[Entry]]] = []
            try:
                if time.monotonic() >= next_lease_check:
                    self._check_lease()
                    interval = (
                        self._renew_interval if self._role is Role.ACTIVE else self._poll_interval
                    )
                    next_lease_check = time.monotonic() + interval
                if self._role is Role.ACTIVE:
                    batch = self._take_batch()
                    if batch:
                        if not self._write(batch):
                            next_lease_check = 0.0
                        failures = 0
                        continue
                self._forget_removed()
                failures = 0
                if not stopping:
                    self._wait_for_work(next_lease_check)
            except redis.RedisError as exc:
                if batch:
                    self._put_back(batch)
                self._lost_redis(exc)
                failures += 1
            except BaseException as exc:  # a bug of ours: never a silent end of the relay
                if batch:
                    self._put_back(batch)
                user_code_raised(exc, f"relay group {self.group!r}", "the writer", logger=log)
                self._internal_errors.add()
                failures += 1
                self._stop.wait(self._policy.delay(failures - 1, self._rng))
        self._finish()

    def _pending(self) -> int:
        return sum(state.buffered() for state in list(self._streams.values()))

    def _should_drain(self, deadline: float) -> bool:
        return (
            self._pending() > 0
            and self._connected
            and self._role is Role.ACTIVE
            and time.monotonic() < deadline
        )

    def _try_connect(self) -> bool:
        try:
            self._client.ping()
        except redis.RedisError as exc:
            self._lost_redis(exc)
            return False
        with self._work:
            was_down = self._disconnected_since is not None and self._counts["redis_errors"] > 0
            self._connected = True
            self._disconnected_since = None
            if was_down:
                self._counts["redis_reconnects"] += 1
        if was_down:
            log.warning("relay: Redis at %s is reachable again", redact_url(self.redis_url))
        return True

    def _lost_redis(self, exc: Exception) -> None:
        with self._work:
            self._counts["redis_errors"] += 1
            if self._connected or self._disconnected_since is None:
                self._disconnected_since = time.monotonic()
            first = self._connected
            self._connected = False
            if self._role is Role.STANDBY or time.monotonic() >= self._lease_valid_until:
                self._set_role(Role.UNKNOWN)
        (log.warning if first else log.debug)(
            "relay: Redis at %s: %s", redact_url(self.redis_url), exc
        )
        if not is_connection_error(exc):
            log.error("relay: unexpected Redis error: %r", exc)
        self._client.connection_pool.disconnect()

    def _check_lease(self) -> None:
        started = time.monotonic()
        result = self._lease.acquire()
        if result is LeaseResult.HELD_BY_ANOTHER:
            with self._work:
                self._set_role(Role.STANDBY)
            return
        if result is LeaseResult.TAKEN or self._role is not Role.ACTIVE:
            self._take_over()  # (also after an outage: a takeover may have failed half-way)
        with self._work:
            self._lease_valid_until = started + self.lease_ttl
            taken_over = result is LeaseResult.TAKEN and self._role is Role.STANDBY
            if result is LeaseResult.TAKEN:
                self._counts["lease_acquisitions"] += 1
            self._set_role(Role.ACTIVE)
        if result is LeaseResult.TAKEN:
            (log.warning if taken_over else log.info)(
                "relay: took the lease of group %r: now the active relay", self.group
            )

    def _take_over(self) -> None:
        """Before the first write after taking the lease: leave out what another writer (or an
        earlier run) already wrote, and stamp the rest past the top of each stream."""
        states = list(self._streams.values())
        if not states:
            return
        pipe = self._client.pipeline(transaction=False)
        for state in states:
            pipe.xrevrange(state.key, count=1)
        tops = pipe.execute(raise_on_error=False)
        for top in tops:
            if isinstance(top, Exception) and is_connection_error(top):
                raise top
        skipped = 0
        for state, top in zip(states, tops, strict=True):
            self._assign_ids(state, len(state.incoming))
            if top and not isinstance(top, Exception):  # (a key of another type: skip)
                skipped += self._align(state, parse_id(top[0][0]), top[0][1].get(b"data", b""))
        with self._work:
            self._counts["duplicates_skipped"] += skipped

    def _align(self, state: RelayStream, top_id: EntryId, top_data: bytes) -> int:
        """Drop from ``state.ready`` what is in Redis up to ``top_id``; how many (writer)."""
        if top_id <= state.last_written:
            return 0  # nothing past what this relay wrote itself
        state.last_written = top_id
        ready = state.ready
        before = len(ready)
        if state.ids.field is not None:  # sequenced: the ids say what is there
            kept = [entry for entry in ready if entry.id > top_id]
        else:
            match = next(
                (i for i in range(len(ready) - 1, -1, -1) if ready[i].data == top_data), None
            )
            if match is not None:
                kept = list(ready)[match + 1 :]
            else:  # not seen here (yet): keep what arrived after the other's last write
                kept = [entry for entry in ready if entry.stamp_ms > top_id[0]]
                state.watch = top_data
                state.watch_until = time.monotonic() + self.lease_ttl
            previous = top_id
            for entry in kept:
                if entry.id <= previous:
                    entry.id = (previous[0], previous[1] + 1)
                previous = entry.id
            state.ids.advance_past(previous)
        state.ids.advance_past(top_id)
        ready.clear()
        ready.extend(kept)
        return before - len(kept)

    def _assign_ids(self, state: RelayStream, limit: int) -> int:
        """Move up to ``limit`` messages from ``incoming`` to ``ready``, with ids; how many
        were left out as repeats (writer)."""
        incoming, ready, ids = state.incoming, state.ready, state.ids
        skipped = 0
        for _ in range(min(limit, len(incoming))):
            data, sequence, stamp_ms = incoming.popleft()
            state.taken += 1
            if state.watch is not None:
                if data == state.watch and time.monotonic() < state.watch_until:
                    state.watch = None
                    skipped += 1
                    continue
                if time.monotonic() >= state.watch_until:
                    state.watch = None
            entry_id = ids.next(sequence, stamp_ms)
            if entry_id is None:  # the exchange repeated itself (e.g. around a reconnect)
                skipped += 1
                continue
            ready.append(Entry(state.key, entry_id, data, stamp_ms, ids.field is not None))
        return skipped

    def _take_batch(self) -> list[tuple[RelayStream, list[Entry]]]:
        batch: list[tuple[RelayStream, list[Entry]]] = []
        room = self.batch_size
        skipped = 0
        for state in list(self._streams.values()):
            if len(state.ready) < room:
                skipped += self._assign_ids(state, room - len(state.ready))
            ready = state.ready
            if not ready:
                continue
            take = min(room, len(ready))
            batch.append((state, [ready.popleft() for _ in range(take)]))
            room -= take
            if room == 0:
                break
        with self._work:
            self._counts["duplicates_skipped"] += skipped
            self._in_flight += self.batch_size - room
        return batch

    def _forget_removed(self) -> None:
        with self._work:
            for name, state in list(self._streams.items()):
                if state.removed and not state.buffered():
                    self._received_by_removed += state.received
                    del self._streams[name]

    def _count_overflows(self) -> None:
        # Caller holds _work. incoming drops its oldest when full: count those. A standby lets
        # its oldest messages go by design; anyone else may hold the only copy: a loss.
        standby = self._current_role() is Role.STANDBY
        for state in self._streams.values():
            # In this order, a concurrent append or pop can only make ``lost`` too small.
            received = state.received
            waiting = len(state.incoming)
            lost = received - state.taken - waiting - state.overflowed
            if lost > 0:
                state.overflowed += lost
                self._count_loss(state, lost, standby)

    def _count_loss(self, state: RelayStream, count: int, standby: bool) -> None:
        # Caller holds _work.
        if standby:
            self._counts["standby_trimmed"] += count
        else:
            self._counts["dropped_entries"] += count
            state.dropped += count

    def _write(self, batch: list[tuple[RelayStream, list[Entry]]]) -> bool:
        """Write ``batch``; False when the lease turned out to be another relay's."""
        entries = [entry for _, part in batch for entry in part]
        result = self._writer.write(entries)
        if result.fenced_out:
            self._put_back(batch)
            with self._work:
                self._counts["lease_losses"] += 1
                self._set_role(Role.STANDBY)
            log.warning("relay: another relay holds the lease of group %r: standing by", self.group)
            return False
        failed = {index for index, _ in result.failures}
        for index, error in result.failures[:3]:
            log.error("relay: Redis refused an entry for %s: %s", entries[index].key, error)
        index = 0
        for state, part in batch:
            for entry in part:
                if index not in failed and entry.id > state.last_written:
                    state.last_written = entry.id
                index += 1
            state.written += len(part)
        with self._work:
            counts = self._counts
            counts["entries_written"] += result.written
            counts["duplicates_skipped"] += result.duplicates
            counts["write_errors"] += len(failed)
            self._in_flight -= len(entries)
            self._work.notify_all()
        return True

    def _put_back(self, batch: list[tuple[RelayStream, list[Entry]]]) -> None:
        with self._work:
            standby = self._current_role() is Role.STANDBY
            for state, part in batch:
                state.ready.extendleft(reversed(part))
                self._in_flight -= len(part)
                excess = len(state.ready) - self.buffer_size
                for _ in range(max(0, excess)):
                    state.ready.popleft()
                if excess > 0:
                    self._count_loss(state, excess, standby)
            self._work.notify_all()

    def _wait_for_work(self, until: float) -> None:
        with self._work:
            self._idle = True
            while not self._stopping:
                if self._role is Role.ACTIVE and self._pending():
                    break
                remaining = until - time.monotonic()
                if remaining <= 0:
                    break
                self._work.wait(remaining)
            self._idle = False

    def _finish(self) -> None:
        if self._connected and self._role is Role.ACTIVE:
            try:
                self._lease.release()
            except redis.RedisError as exc:
                log.debug("relay: could not release the lease: %s", exc)
        with self._work:
            self._count_overflows()
            self._set_role(Role.UNKNOWN)
            self._connected = False
            self._work.notify_all()

    # -- role ----------------------------------------------------------------------------------

    def _set_role(self, role: Role) -> None:
        # Caller holds _work.
        if role is not self._role:
            self._role = role
            self._work.notify_all()

    def _current_role(self) -> Role:
        # Caller holds _work. Active only while the lease surely has not run out.
        if self._role is Role.ACTIVE and time.monotonic() >= self._lease_valid_until:
            return Role.UNKNOWN
        return self._role
