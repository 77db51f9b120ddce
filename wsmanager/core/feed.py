"""One stream's bounded, ordered feed: from the reader threads to its connection group's
callback thread.

A reader thread hands each decoded message of a stream to that stream's :class:`StreamFeed`
(:meth:`StreamFeed.offer`, or :meth:`StreamFeed.offer_locked` for a whole read under one lock),
which keeps the stream's order:
duplicates are dropped, jumps in the sequence numbers become :class:`~wsmanager.Gap` events, and
during a handover the messages of the new connection wait until they continue what the old one
delivered (by sequence number, else by event time ``E``). Each feed is bounded in messages and in
bytes: a full feed makes the reader wait (back-pressure) before the oldest are dropped (counted).
Its fields are guarded by its :class:`~wsmanager.core.delivery.DeliveryLoop`'s lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..config import DEFAULT_SEQUENCE_RESET_THRESHOLD
from .flow import Pressure
from .sequence import DUPLICATE, Jump, Sequencer, SequenceRule
from .state import Gap
from .subscription import Backfill, Ending, Subscription

__all__ = ["FeedLoop", "Report", "StreamFeed"]

log = logging.getLogger("wsmanager")

_ROOM_POLL = 0.05  # seconds between two looks at the reader's stop flag while it waits


class FeedLoop(Protocol):
    """What a feed needs of the callback thread it belongs to."""

    lock: Any  # guards the feed's state
    room: threading.Condition  # notified when a turn took messages out (back-pressure)

    def schedule_locked(self, feed: StreamFeed) -> None: ...


class Report:
    """A gap among a feed's messages, for the ``on_gap`` listeners (``fetch``: try the
    stream's backfill first). Anything else in a feed is a message."""

    __slots__ = ("fetch", "gap")

    def __init__(self, gap: Gap, fetch: bool = False) -> None:
        self.gap = gap
        self.fetch = fetch


class StreamFeed:
    """One stream's buffer and order. Fields are guarded by ``loop.lock`` unless noted."""

    # Slots: a reader touches many feeds per read once streams interleave; compact feeds keep
    # more of them in the CPU's cache.
    __slots__ = (
        "_dropping",
        "_ending",
        "_held",
        "_in_turn",
        "_items",
        "_last_time",
        "_plan",
        "_pressed",
        "_queued",
        "_sequencer",
        "_sizes",
        "_source",
        "_source_epoch",
        "_successor",
        "_time_floor",
        "_told",
        "_waiting",
        "_warn_due",
        "backfill",
        "backfilled",
        "buffered_bytes",
        "callback_errors",
        "capacity",
        "dropped",
        "duplicates",
        "gaps",
        "last_message_at",
        "last_message_monotonic",
        "loop",
        "max_bytes",
        "name",
        "on_switch",
        "received",
        "subscribers",
    )

    def __init__(
        self,
        name: str,
        loop: FeedLoop,
        *,
        capacity: int,
        max_bytes: int,
        rule: SequenceRule | None,
        reset_threshold: int = DEFAULT_SEQUENCE_RESET_THRESHOLD,
    ) -> None:
        self.name = name
        self.loop = loop
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.subscribers: tuple[Subscription, ...] = ()  # swapped whole by the registry
        self.backfill: Backfill | None = None  # set by the registry when a subscriber asks
        # What waits for the callback thread: messages and Reports, and each one's size in
        # bytes (0 for a Report). Two deques, not one of tuples: a tuple holding a dict stays
        # tracked by the cyclic garbage collector, which then walks every buffered message.
        self._items: deque[Any] = deque()
        self._sizes: deque[int] = deque()
        self.buffered_bytes = 0
        self._sequencer = (
            Sequencer(rule, reset_threshold=reset_threshold) if rule is not None else None
        )
        self._source: object | None = None  # the connection whose messages count now
        self._source_epoch: object | None = None
        self._successor: object | None = None
        self._held: list[tuple[Any, int, object]] = []  # the successor's, until the switch
        # Streams without sequence numbers switch by event time ``E``: the last one delivered,
        # and after a switch the floor below which the new source's messages were delivered.
        self._last_time: int | None = None
        self._time_floor: int | None = None
        self.on_switch: Callable[[], None] | None = None  # signals the handover (no lock taken)
        self._queued = False
        self._in_turn = False  # its turn is running: new messages wait for the next turn
        self._waiting = False  # a backfill is being fetched: no turn until it is in
        self._ending: tuple[Ending, Exception | None, tuple[Subscription, ...]] | None = None
        self._told = False  # the ending was handed to the loop
        self._dropping = False
        self._warn_due = False  # a dropping episode began: warn once the lock is released
        self._pressed = False  # a reader waits for room in this buffer
        self._plan: Any = None  # the subscribers as _turn calls them (the callback thread's)
        # Counters (written under the lock by readers, or by the loop thread only).
        self.received = 0
        self.dropped = 0
        self.duplicates = 0
        self.last_message_at: float | None = None  # epoch seconds
        self.last_message_monotonic: float | None = None
        self.gaps = 0  # loop thread
        self.backfilled = 0  # loop thread
        self.callback_errors = 0  # loop thread

    # -- the connections' side (reader threads) -------------------------------------------------

    def attach(self, connection: object) -> None:
        """Take messages from ``connection``: a new stream, or back to the old connection after
        an abandoned handover (what it repeats of what was delivered is dropped)."""
        with self.loop.lock:
            if self._source is not None and self._source is not connection:
                self._time_floor = self._last_time
            self._source = connection
            self._successor = None
            self._held.clear()

    def begin_handover(self, successor: object) -> None:
        """``successor`` carries this stream too; switch to it once it continues the sequence."""
        with self.loop.lock:
            if self._source is None:
                self._source = successor
            elif self._source is not successor:
                self._successor = successor
                self._held.clear()

    def switched_to(self, connection: object) -> bool:
        with self.loop.lock:
            return self._source is connection and self._successor is None

    def force_switch(self, connection: object) -> None:
        """The handover is over: take ``connection``'s messages from now on."""
        with self.loop.lock:
            if self._successor is connection or self._source is None:
                self._switch_locked()
            elif self._source is not connection:
                self._time_floor = self._last_time
                self._source, self._successor = connection, None
                self._held.clear()

    def offer(
        self,
        connection: object,
        epoch: object,
        message: Any,
        size: int,
        pressure: Pressure | None = None,
    ) -> None:
        """A message of this stream from ``connection`` (its socket ``epoch``), ``size`` bytes."""
        with self.loop.lock:
            self.heard_locked(time.monotonic(), time.time())
            self.offer_locked(connection, epoch, message, size, pressure)
        self.tell_drops()

    def offer_locked(
        self,
        connection: object,
        epoch: object,
        message: Any,
        size: int,
        pressure: Pressure | None,
    ) -> None:
        """:meth:`offer` for a reader that holds ``loop.lock`` for a whole read, handing on its
        messages in the order they came (each while it is still in the CPU's cache; grouping
        them by stream first costs a cache miss per message once many streams interleave).
        With ``pressure``, a full buffer makes the reader wait (up to the episode's deadline)
        before the oldest message is dropped. The caller calls :meth:`heard_locked` first."""
        if self._ending is not None:
            return
        if connection is self._source and not self._held and pressure is not None:
            items = self._items  # the stream's source, no handover under way: almost always
            if (
                items
                and not self._dropping
                and (len(items) >= self.capacity or self.buffered_bytes + size > self.max_bytes)
            ):
                self._wait_for_room_locked(pressure, size)
                if self._ending is not None:
                    return
            if connection is self._source and not self._held:
                self.received += 1
                self._accept_locked(message, size, epoch)
                return
        elif pressure is not None and self._must_wait_locked(connection, size):
            self._wait_for_room_locked(pressure, size)
            if self._ending is not None:
                return
        self._offer_locked(connection, epoch, message, size)

    def heard_locked(self, monotonic: float, wall: float) -> None:
        """Messages come from a connection at these times (once per read, not per message)."""
        self.last_message_monotonic = monotonic
        self.last_message_at = wall

    def _must_wait_locked(self, connection: object, size: int) -> bool:
        """The reader waits for room: the source's message into a full buffer, not dropping."""
        return not self._dropping and connection is self._source and self._full_locked(size)

    def _full_locked(self, size: int) -> bool:
        items = self._items
        return bool(items) and (
            len(items) >= self.capacity or self.buffered_bytes + size > self.max_bytes
        )

    def _wait_for_room_locked(self, pressure: Pressure, size: int) -> None:
        """Wait (lock released) until the callback thread has taken what is buffered, the
        episode's deadline passes, or the stream or the reader ends."""
        started = time.monotonic()
        deadline = pressure.start_wait(started)
        self._pressed = True
        room = self.loop.room
        try:
            while self._full_locked(size) and self._ending is None and not pressure.stopping():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                room.wait(min(remaining, _ROOM_POLL))
        finally:
            self._pressed = False
            pressure.waited += time.monotonic() - started

    def _offer_locked(self, connection: object, epoch: object, message: Any, size: int) -> None:
        if connection is self._source:
            self.received += 1
            self._accept_locked(message, size, epoch)
            if self._held:
                self._try_switch_locked()
        elif connection is self._successor:
            self._held.append((message, size, epoch))
            if len(self._held) > self.capacity:  # bounded in every state: switch now
                self._switch_locked()
            else:
                self._try_switch_locked()
        # else: a connection this stream has left (unsubscribed, or a finished handover)

    def _try_switch_locked(self) -> None:
        """Switch to the successor once the old connection has caught up with the successor's
        first message: by sequence number, else by event time ``E``, else at once."""
        first = self._held[0][0]
        if self._sequencer is not None:
            if self._sequencer.follows(first):
                self._switch_locked()
            return
        first_time = _event_time(first)
        if first_time is None or self._last_time is None or first_time <= self._last_time:
            self._switch_locked()

    def _switch_locked(self) -> None:
        if self._successor is not None:
            self._source, self._successor = self._successor, None
            self._time_floor = self._last_time
        held, self._held = self._held, []
        for message, size, epoch in held:
            self.received += self._accept_locked(message, size, epoch)
        if self.on_switch is not None:
            self.on_switch()

    def _accept_locked(self, message: Any, size: int, epoch: object) -> bool:
        """Buffer the source's ``message`` for delivery unless it repeats what was delivered
        (once per message: nothing allocated on the way that delivers without a report)."""
        after_reconnect = self._source_epoch is not None and epoch is not self._source_epoch
        self._source_epoch = epoch
        sequencer = self._sequencer
        if sequencer is not None:
            verdict = sequencer.check(message)
            if verdict is not None:
                if verdict is DUPLICATE:
                    self.duplicates += 1
                    return False
                assert isinstance(verdict, Jump)
                self._report_locked(verdict, after_reconnect)
        else:  # no sequence number: event time, in a handover
            event_time = _event_time(message)
            if event_time is not None:
                floor = self._time_floor
                if floor is not None:
                    if event_time <= floor:  # the previous connection delivered it
                        self.duplicates += 1
                        return False
                    self._time_floor = None
                self._last_time = event_time
        items = self._items
        items.append(message)
        self._sizes.append(size)
        self.buffered_bytes += size
        if len(items) > self.capacity or self.buffered_bytes > self.max_bytes:
            self._bound_locked()
        if not (self._queued or self._in_turn or self._waiting):  # _schedule_locked, inline
            self.loop.schedule_locked(self)
        return True

    def _report_locked(self, jump: Jump, after_reconnect: bool) -> None:
        gap = Gap(self.name, jump.expected, jump.received, after_reconnect, jump.reset)
        self._append_locked(Report(gap, fetch=self.backfill is not None and not jump.reset))

    def _schedule_locked(self) -> None:
        if not (self._queued or self._in_turn or self._waiting):
            self.loop.schedule_locked(self)

    def _append_locked(self, report: Report) -> None:
        self._items.append(report)
        self._sizes.append(0)
        self._bound_locked()
        self._schedule_locked()

    def _bound_locked(self) -> None:
        """Drop the oldest messages while the buffer is over its bounds."""
        items = self._items
        while len(items) > self.capacity or (
            self.buffered_bytes > self.max_bytes and len(items) > 1
        ):
            if not self._drop_oldest_locked():
                break

    def _drop_oldest_locked(self) -> bool:
        """Drop the oldest message; gap reports ahead of it stay (never dropped silently, and
        never a reason to keep more messages than the bound). False when only reports are left."""
        items, sizes = self._items, self._sizes
        reports = 0
        while reports < len(items) and type(items[reports]) is Report:
            reports += 1
        if reports == len(items):
            return False
        if reports:
            size = sizes[reports]
            del items[reports], sizes[reports]
        else:
            items.popleft()
            size = sizes.popleft()
        self.buffered_bytes -= size
        self.dropped += 1
        if not self._dropping:
            self._dropping = True
            self._warn_due = True  # logged by tell_drops(), outside the lock
        return True

    def tell_drops(self) -> None:
        """Log the warning of a dropping episode that began (lock not held: logging handlers
        are user code). Whoever offered to the feed calls it after releasing the lock."""
        if not self._warn_due:  # read without the lock: the common case costs nothing
            return
        with self.loop.lock:
            due, self._warn_due = self._warn_due, False
        if due:
            log.warning(
                "stream %s: callbacks are slower than the stream; dropping the oldest "
                "buffered messages (at most %d messages / %d bytes)",
                self.name,
                self.capacity,
                self.max_bytes,
            )

    def add_gap(self, gap: Gap) -> None:
        """Hand ``gap`` to the ``on_gap`` listeners in its place among this feed's messages (a
        window no sequence number shows, e.g. a user data subscription made again)."""
        with self.loop.lock:
            if self._ending is None:
                self._append_locked(Report(gap))
        self.tell_drops()

    def buffered(self) -> int:
        return len(self._items)

    def plan(
        self,
    ) -> tuple[list[tuple[Subscription, Any]], list[tuple[Subscription, Any]], list[Subscription]]:
        """The subscribers by how they are called: per message (dicts), per message (typed),
        per batch; made again only when the subscriber tuple was swapped (callback thread)."""
        subscribers = self.subscribers
        plan = self._plan
        if plan is None or plan[0] is not subscribers:
            singles = [(s, s.callback) for s in subscribers if not s.batch and s.decode is None]
            typed = [(s, s.callback) for s in subscribers if not s.batch and s.decode]
            batches = [s for s in subscribers if s.batch]
            self._plan = plan = (subscribers, singles, typed, batches)
        return plan[1], plan[2], plan[3]

    def typed_decoder(self) -> Callable[[bytes, bool], Any] | None:
        """The decoder of this stream's typed subscribers (None: nobody wants typed messages)."""
        for subscription in self.subscribers:
            if subscription.decode is not None:
                return subscription.decode
        return None

    # -- the end --------------------------------------------------------------------------------

    def finish(
        self,
        ending: Ending,
        subscribers: tuple[Subscription, ...] = (),
        error: Exception | None = None,
    ) -> None:
        """Discard what is buffered; then tell ``subscribers`` how the stream ended."""
        with self.loop.lock:
            if self._ending is not None:
                return
            self._ending = (ending, error, subscribers)
            if self._pressed:
                self.loop.room.notify_all()
            self._items.clear()
            self._sizes.clear()
            self.buffered_bytes = 0
            self._source = self._successor = None
            self._held.clear()
            needed = ending is not Ending.UNSUBSCRIBED and any(
                s.on_error if ending is Ending.FAILED else s.on_complete for s in subscribers
            )
            if needed:
                self.loop.schedule_locked(self)

    # -- the loop's side ------------------------------------------------------------------------

    def _take_locked(
        self,
    ) -> tuple[
        list[Any], list[int], tuple[Ending, Exception | None, tuple[Subscription, ...]] | None
    ]:
        """Everything buffered (messages and Reports, and their sizes), and the ending to tell
        if it was not told yet; the buffer is empty afterwards (callback thread)."""
        items, sizes = list(self._items), list(self._sizes)
        self._items.clear()
        self._sizes.clear()
        self.buffered_bytes = 0
        if self._dropping and len(items) < self.capacity:
            self._dropping = False  # the callbacks caught up: the next full buffer waits again
        if self._pressed:
            self.loop.room.notify_all()
        if self._ending is None or self._told:
            return items, sizes, None
        self._told = True
        return items, sizes, self._ending

    def _give_back_locked(self, items: list[Any], sizes: list[int]) -> None:
        """Put the rest of a turn (or a backfill's messages) back in front; the feed is queued
        when the turn ends."""
        if self._ending is not None:
            return
        self._items.extendleft(reversed(items))
        self._sizes.extendleft(reversed(sizes))
        self.buffered_bytes += sum(sizes)


def _event_time(message: Any) -> int | None:
    """The event time ``E`` of a payload, if it has one."""
    if isinstance(message, dict):
        value = message.get("E")
        if type(value) is int:
            return value
    return None
