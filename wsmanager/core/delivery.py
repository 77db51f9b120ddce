"""From reader threads to callbacks: each stream's bounded, ordered feed, and the callback thread
that the streams of one connection share.

A reader thread hands each decoded message of a stream to that stream's :class:`StreamFeed`
(:meth:`StreamFeed.offer`), which keeps the stream's order: duplicates are dropped, jumps in the
sequence numbers become :class:`~wsmanager.Gap` events, and during a handover the messages of
the new connection wait until they continue what the old one delivered. Each feed is bounded in
messages and in bytes (the oldest dropped, counted).

A :class:`DeliveryLoop` (one thread, started on first need) delivers the feeds of one connection
group: ready feeds take turns, and a turn delivers what the feed has pending, handing the thread
on to the next ready feed after a short time slice, so one slow callback holds another stream
back by about one callback's duration at most. Its lock guards every feed's state; user code is
never called under it.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import DEFAULT_SEQUENCE_RESET_THRESHOLD
from ._locks import make_lock
from .flow import Decoded, Pressure
from .sequence import Sequencer, SequenceRule, Verdict
from .state import Gap
from .usercode import call_user, user_code_raised

__all__ = ["DeliveryLoop", "Ending", "StreamFeed", "Subscribable", "Subscription"]

log = logging.getLogger("wsmanager")

MessageCallback = Callable[[Any], object]
ErrorCallback = Callable[[Exception], object]
CompleteCallback = Callable[[], object]
GapCallback = Callable[[Gap], object]
Backfill = Callable[[Gap], list[Any]]


class Subscribable(Protocol):
    """Anything with :meth:`WSManager.subscribe <wsmanager.WSManager.subscribe>`'s signature."""

    def subscribe(
        self,
        stream: str,
        callback: MessageCallback,
        on_error: ErrorCallback | None = None,
        on_complete: CompleteCallback | None = None,
    ) -> Callable[[], None]: ...


TURN_SLICE = 0.01  # seconds a stream keeps the callback thread while others are waiting
_ROOM_POLL = 0.05  # seconds between two looks at the reader's stop flag while it waits


@dataclass(eq=False)
class Subscription:
    """One subscriber of one stream. ``active`` is switched off, once, under the registry lock."""

    stream: str
    callback: MessageCallback
    on_error: ErrorCallback | None = None
    on_complete: CompleteCallback | None = None
    backfill: bool = False
    batch: bool = False  # callback(list): every message pending at its turn
    # Typed messages: decode(frame, enveloped) -> a typed object, or None (the dict is given)
    decode: Callable[[bytes, bool], Any] | None = None
    active: bool = field(default=True)

    def deactivate(self) -> None:
        """No callback of this subscription starts after this returns (a running one
        finishes): the delivery loop checks ``active`` before each call."""
        self.active = False


class Ending(enum.Enum):
    """Why a stream ends, and so what its subscribers are told."""

    UNSUBSCRIBED = "unsubscribed"  # nobody left to tell
    COMPLETED = "completed"  # idle cleanup or destroy: on_complete()
    FAILED = "failed"  # unrecoverable: on_error(exc)


_MESSAGE, _GAP, _BACKFILL = 0, 1, 2


class StreamFeed:
    """One stream's buffer and order. Fields are guarded by ``loop.lock`` unless noted."""

    def __init__(
        self,
        name: str,
        loop: DeliveryLoop,
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
            for message, size in batch:
                if (
                    pressure is not None
                    and not self._dropping
                    and connection is self._source
                    and self._full_locked(size)
                ):
                    self._wait_for_room_locked(pressure, size)
                    if self._ending is not None:
                        return
                self._offer_locked(connection, epoch, message, size)

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

    def _count_locked(self) -> None:
        """One more message received from the stream's source (a handover's second copies are
        counted only when they are delivered, at the switch)."""
        self.received += 1
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
        self._append_locked(_MESSAGE, message, size)
        return True

    def _append_locked(self, kind: int, value: Any, size: int) -> None:
        items = self._items
        items.append((kind, value, size))
        self.buffered_bytes += size
        while len(items) > self.capacity or (
            self.buffered_bytes > self.max_bytes and len(items) > 1
        ):
            if not self._drop_oldest_locked():
                break
        self.loop.schedule_locked(self)

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


class DeliveryLoop:
    """The callback thread of one connection group, shared by its streams' feeds."""

    def __init__(self, name: str, gap_listeners: Callable[[], tuple[GapCallback, ...]]) -> None:
        self.name = name
        self.lock = make_lock("delivery")  # guards _ready, _closed, thread and every feed's state
        self._wake = threading.Condition(self.lock)
        self.room = threading.Condition(self.lock)  # a reader waits for a feed to be taken
        self._ready: deque[StreamFeed] = deque()
        self._closed = False
        self._gap_listeners = gap_listeners
        self.thread: threading.Thread | None = None
        self.helpers: list[threading.Thread] = []  # backfill fetches (lock held to change)

    def schedule_locked(self, feed: StreamFeed) -> None:
        """Queue ``feed`` for a turn (caller holds ``lock``); start the thread on first need.

        A feed whose turn is running is queued when the turn ends, behind the feeds that became
        ready meanwhile: a busy stream cannot take two turns in a row while another waits."""
        if feed._queued or feed._in_turn or feed._waiting:
            return
        feed._queued = True
        self._ready.append(feed)
        if self.thread is None:
            self.thread = threading.Thread(
                target=self._run, name=f"wsmanager-dispatch-{self.name}", daemon=True
            )
            self.thread.start()
        else:
            self._wake.notify()

    def close(self) -> None:
        """No feed will be added: the thread ends once every queued turn is done."""
        with self.lock:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self.lock:
                while not self._ready and not self._closed:
                    self._wake.wait()
                if not self._ready:
                    return
                feed = self._ready.popleft()
                feed._queued = False
                feed._in_turn = True
                items, ending = feed._take_locked()
            try:
                self._turn(feed, items)
                if ending is not None:
                    feed.callback_errors += _tell_ending(feed.name, *ending)
            except BaseException as exc:  # never lose the thread: every stream depends on it
                user_code_raised(exc, f"stream {feed.name}", "delivery")
            finally:
                with self.lock:
                    feed._in_turn = False
                    if feed._items or (feed._ending is not None and not feed._told):
                        self.schedule_locked(feed)

    def _turn(self, feed: StreamFeed, items: list[tuple[int, Any, int]]) -> None:
        started = time.monotonic()
        subscribers = feed.subscribers  # once per turn; an unsubscribe swaps in a no-op
        singles = [s for s in subscribers if not s.batch and s.decode is None]
        typed_singles = [s for s in subscribers if not s.batch and s.decode is not None]
        batches = [s for s in subscribers if s.batch]
        run: list[Any] = []  # messages since the last report, for the batch subscribers
        for index, (kind, value, _size) in enumerate(items):
            if kind == _MESSAGE:
                for subscription in singles:
                    if not subscription.active:
                        continue
                    try:
                        subscription.callback(value)
                    except BaseException as exc:  # SystemExit and RecursionError included
                        feed.callback_errors += 1
                        user_code_raised(exc, f"stream {feed.name}", "a subscriber's callback")
                if typed_singles:
                    typed = value.typed if type(value) is Decoded else value
                    for subscription in typed_singles:
                        if not subscription.active:
                            continue
                        try:
                            subscription.callback(typed)
                        except BaseException as exc:
                            feed.callback_errors += 1
                            user_code_raised(exc, f"stream {feed.name}", "a subscriber's callback")
                if batches:
                    run.append(value)
                if (
                    self._ready
                    and time.monotonic() - started > TURN_SLICE
                    and index + 1 < len(items)
                ):
                    self._deliver_batch(feed, batches, run)
                    with self.lock:
                        feed._give_back_locked(items[index + 1 :])
                    return
                continue
            self._deliver_batch(feed, batches, run)
            run = []
            if kind == _BACKFILL and feed.backfill is not None:
                self._start_backfill(feed, value, items[index + 1 :])
                return
            self._gap(feed, kind, value)
        self._deliver_batch(feed, batches, run)

    @staticmethod
    def _deliver_batch(feed: StreamFeed, batches: list[Subscription], run: list[Any]) -> None:
        if not run:
            return
        typed: list[Any] | None = None
        for subscription in batches:
            if not subscription.active:
                continue
            if subscription.decode is not None:
                if typed is None:
                    typed = [v.typed if type(v) is Decoded else v for v in run]
                messages = list(typed)
            else:
                messages = list(run)
            try:
                subscription.callback(messages)
            except BaseException as exc:  # SystemExit and RecursionError included
                feed.callback_errors += 1
                user_code_raised(exc, f"stream {feed.name}", "a subscriber's batch callback")

    def _start_backfill(self, feed: StreamFeed, gap: Gap, rest: list[tuple[int, Any, int]]) -> None:
        """Fetch the gap's messages on a thread of their own: the stream waits (its order is
        kept), the other streams of this thread go on."""
        thread = threading.Thread(
            target=self._backfill, args=(feed, gap), name=f"wsmanager-backfill-{feed.name}"
        )
        thread.daemon = True
        with self.lock:
            feed._give_back_locked(rest)
            feed._waiting = True
            self.helpers = [t for t in self.helpers if t.is_alive()]
            self.helpers.append(thread)
        thread.start()

    def _backfill(self, feed: StreamFeed, gap: Gap) -> None:
        missing: list[Any] | None = None
        try:
            assert feed.backfill is not None
            missing = feed.backfill(gap)
        except BaseException as exc:  # the fetch parses what a server sent: anything goes
            user_code_raised(exc, f"stream {feed.name}", f"the backfill of {gap}")
        with self.lock:
            feed._waiting = False
            if feed._ending is None:
                if missing is None:
                    feed._items.appendleft((_GAP, gap, 0))
                else:
                    feed._items.extendleft((_MESSAGE, message, 0) for message in reversed(missing))
                    feed.backfilled += len(missing)
            if feed._items or (feed._ending is not None and not feed._told):
                self.schedule_locked(feed)

    def _gap(self, feed: StreamFeed, kind: int, gap: Gap) -> None:
        feed.gaps += 1
        log.warning(
            "stream %s: gap of %d (expected %d, received %d%s)",
            gap.stream,
            gap.missing,
            gap.expected,
            gap.received,
            ", after a reconnect" if gap.after_reconnect else "",
        )
        for listener in self._gap_listeners():
            if not call_user(listener, gap, where=f"stream {feed.name}", what="an on_gap callback"):
                feed.callback_errors += 1


def _tell_ending(
    stream: str, ending: Ending, error: Exception | None, subscribers: tuple[Subscription, ...]
) -> int:
    """Tell each subscriber how the stream ended; the number of callbacks that raised."""
    failed = 0
    for subscription in subscribers:
        callback: Callable[..., object] | None
        args: tuple[Any, ...] = ()
        if ending is Ending.FAILED:
            callback, args = subscription.on_error, (error,)
        elif ending is Ending.COMPLETED:
            callback = subscription.on_complete
        else:
            callback = None
        if callback is None:
            continue
        what = "an on_error callback" if ending is Ending.FAILED else "an on_complete callback"
        if not call_user(callback, *args, where=f"stream {stream}", what=what):
            failed += 1
    return failed
