"""One stream's bounded, ordered feed: from the reader threads to its connection group's
callback thread.

A reader thread hands each decoded message of a stream to that stream's :class:`StreamFeed`
(:meth:`StreamFeed.offer`, :meth:`StreamFeed.offer_many`), which keeps the stream's order:
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
from .sequence import Sequencer, SequenceRule, Verdict
from .state import Gap
from .subscription import Backfill, Ending, Subscription

__all__ = ["FeedLoop", "StreamFeed"]

log = logging.getLogger("wsmanager")

_ROOM_POLL = 0.05  # seconds between two looks at the reader's stop flag while it waits


class FeedLoop(Protocol):
    """What a feed needs of the callback thread it belongs to."""

    lock: Any  # guards the feed's state
    room: threading.Condition  # notified when a turn took messages out (back-pressure)

    def schedule_locked(self, feed: StreamFeed) -> None: ...

    def offer_batches(
        self,
        connection: object,
        epoch: object,
        batches: list[tuple[StreamFeed, list[tuple[Any, int]]]],
        pressure: Pressure | None,
    ) -> None: ...


_MESSAGE, _GAP, _BACKFILL = 0, 1, 2


class StreamFeed:
    """One stream's buffer and order. Fields are guarded by ``loop.lock`` unless noted."""

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
        self._items: deque[tuple[int, Any, int]] = deque()
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

    def offer(self, connection: object, epoch: object, message: Any, size: int) -> None:
        """A message of this stream from ``connection`` (its socket ``epoch``)."""
        with self.loop.lock:
            if self._ending is not None:
                return
            self._offer_locked(connection, epoch, message, size)

    def offer_many(
        self,
        connection: object,
        epoch: object,
        batch: list[tuple[Any, int]],
        pressure: Pressure | None = None,
    ) -> None:
        """Messages of this stream from ``connection``, in order: one lock round-trip and at
        most one wake-up of the callback thread. With ``pressure``, a full buffer makes the
        reader wait (up to the episode's deadline) before the oldest message is dropped."""
        with self.loop.lock:
            if self._ending is not None:
                return
            self._offer_many_locked(connection, epoch, batch, pressure)

    def _offer_many_locked(
        self,
        connection: object,
        epoch: object,
        batch: list[tuple[Any, int]],
        pressure: Pressure | None,
    ) -> None:
        if connection is not self._source or pressure is None:
            for message, size in batch:
                if pressure is not None and self._must_wait_locked(connection, size):
                    self._wait_for_room_locked(pressure, size)
                    if self._ending is not None:
                        return
                self._offer_locked(connection, epoch, message, size)
            return
        # The stream's source (almost always): counted once, a bound checked inline.
        items = self._items
        capacity, max_bytes = self.capacity, self.max_bytes
        accept = self._accept_locked
        counted = 0
        for message, size in batch:
            if (
                items
                and (len(items) >= capacity or self.buffered_bytes + size > max_bytes)
                and self._must_wait_locked(connection, size)
            ):
                self._wait_for_room_locked(pressure, size)
                if self._ending is not None:
                    break
            if connection is not self._source:  # switched while the reader waited
                self._offer_locked(connection, epoch, message, size)
                continue
            counted += 1
            accept(message, size, epoch)
            if self._held:
                self._try_switch_locked()
        if counted:
            self._count_locked(counted)

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
            self._count_locked()
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

    def _count_locked(self, count: int = 1) -> None:
        """More messages received from the stream's source (a handover's second copies are
        counted only when they are delivered, at the switch)."""
        self.received += count
        self.last_message_monotonic = time.monotonic()
        self.last_message_at = time.time()

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
            if self._accept_locked(message, size, epoch):
                self._count_locked()
        if self.on_switch is not None:
            self.on_switch()

    def _accept_locked(self, message: Any, size: int, epoch: object) -> bool:
        """Buffer ``message`` for delivery unless it repeats what was delivered."""
        after_reconnect = self._source_epoch is not None and epoch is not self._source_epoch
        self._source_epoch = epoch
        sequencer = self._sequencer
        if sequencer is not None:
            verdict, gap = sequencer.check(message)
            if verdict is Verdict.DUPLICATE:
                self.duplicates += 1
                return False
            if gap is not None:
                event = Gap(self.name, gap.expected, gap.received, after_reconnect, gap.reset)
                kind = _BACKFILL if self.backfill is not None and not gap.reset else _GAP
                self._append_locked(kind, event, 0)
        else:
            event_time = _event_time(message)
            if event_time is not None:
                floor = self._time_floor
                if floor is not None:
                    if event_time <= floor:  # the previous connection delivered it
                        self.duplicates += 1
                        return False
                    self._time_floor = None
                self._last_time = event_time
        items = self._items  # _append_locked, inline: once per message
        items.append((_MESSAGE, message, size))
        self.buffered_bytes += size
        if len(items) > self.capacity or self.buffered_bytes > self.max_bytes:
            self._bound_locked()
        if not (self._queued or self._in_turn or self._waiting):
            self.loop.schedule_locked(self)
        return True

    def _append_locked(self, kind: int, value: Any, size: int) -> None:
        self._items.append((kind, value, size))
        self.buffered_bytes += size
        self._bound_locked()
        if not (self._queued or self._in_turn or self._waiting):
            self.loop.schedule_locked(self)

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
        items = self._items
        kept: list[tuple[int, Any, int]] = []
        while items and items[0][0] != _MESSAGE:
            kept.append(items.popleft())
        if not items:
            items.extendleft(reversed(kept))
            return False
        dropped = items.popleft()
        items.extendleft(reversed(kept))
        self.buffered_bytes -= dropped[2]
        self.dropped += 1
        if not self._dropping:
            self._dropping = True
            log.warning(
                "stream %s: callbacks are slower than the stream; dropping the oldest "
                "buffered messages (at most %d messages / %d bytes)",
                self.name,
                self.capacity,
                self.max_bytes,
            )
        return True

    def add_gap(self, gap: Gap) -> None:
        """Hand ``gap`` to the ``on_gap`` listeners in its place among this feed's messages (a
        window no sequence number shows, e.g. a user data subscription made again)."""
        with self.loop.lock:
            if self._ending is None:
                self._append_locked(_GAP, gap, 0)

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
        list[tuple[int, Any, int]], tuple[Ending, Exception | None, tuple[Subscription, ...]] | None
    ]:
        items = list(self._items)
        self._items.clear()
        self.buffered_bytes = 0
        if self._dropping and len(items) < self.capacity:
            self._dropping = False  # the callbacks caught up: the next full buffer waits again
        if self._pressed:
            self.loop.room.notify_all()
        if self._ending is None or self._told:
            return items, None
        self._told = True
        return items, self._ending

    def _give_back_locked(self, items: list[tuple[int, Any, int]]) -> None:
        """Put the rest of a turn back in front; it is queued when the turn ends."""
        if self._ending is not None:
            return
        self._items.extendleft(reversed(items))
        self.buffered_bytes += sum(item[2] for item in items)


def _event_time(message: Any) -> int | None:
    """The event time ``E`` of a payload, if it has one."""
    if type(message) is dict:
        value = message.get("E")
        if type(value) is int:
            return value
    return None
