"""The callback thread that the streams of one connection group share.

A :class:`DeliveryLoop` (one thread, started on first need) delivers the feeds
(:class:`~wsmanager.core.feed.StreamFeed`) of one connection group: ready feeds take turns, and a
turn delivers what the feed has pending, handing the thread on to the next ready feed after a
short time slice, so one slow callback holds another stream back by about one callback's duration
at most. Its lock guards every feed's state; user code is never called under it, and whatever
user code raises is reported and counted (:mod:`wsmanager.core.usercode`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from ._locks import make_lock
from .feed import Report, StreamFeed
from .flow import Decoded
from .state import Gap
from .subscription import (
    Backfill,
    CompleteCallback,
    Ending,
    ErrorCallback,
    GapCallback,
    MessageCallback,
    Subscribable,
    Subscription,
)
from .usercode import call_user, user_code_raised

__all__ = [
    "Backfill",
    "CompleteCallback",
    "DeliveryLoop",
    "Ending",
    "ErrorCallback",
    "GapCallback",
    "MessageCallback",
    "StreamFeed",
    "Subscribable",
    "Subscription",
]

log = logging.getLogger("wsmanager")

TURN_SLICE = 0.01  # seconds a stream keeps the callback thread while others are waiting


class DeliveryLoop:
    """The callback thread of one connection group, shared by its streams' feeds."""

    def __init__(self, name: str, gap_listeners: Callable[[], tuple[GapCallback, ...]]) -> None:
        self.name = name
        self.lock = make_lock("delivery")  # guards _ready, _closed, thread and every feed's state
        self._wake = threading.Condition(self.lock)
        self.room = threading.Condition(self.lock)  # a reader waits for a feed to be taken
        self._ready: deque[StreamFeed] = deque()
        self._closed = False
        self._sleeping = False  # the thread waits for a ready feed (only then is it notified)
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
        elif self._sleeping:
            self._wake.notify()

    def close(self) -> None:
        """No feed will be added: the thread ends once every queued turn is done."""
        with self.lock:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        done: StreamFeed | None = None  # the feed whose turn just ended
        while True:
            with self.lock:  # one round trip per turn: end the last one, start the next
                if done is not None:
                    done._in_turn = False
                    if done._items or (done._ending is not None and not done._told):
                        self.schedule_locked(done)
                    done = None
                while not self._ready and not self._closed:
                    self._sleeping = True
                    self._wake.wait()
                    self._sleeping = False
                if not self._ready:
                    return
                feed = self._ready.popleft()
                feed._queued = False
                feed._in_turn = True
                items, sizes, ending = feed._take_locked()
            try:
                self._turn(feed, items, sizes)
                if ending is not None:
                    feed.callback_errors += _tell_ending(feed.name, *ending)
            except BaseException as exc:  # never lose the thread: every stream depends on it
                user_code_raised(exc, f"stream {feed.name}", "delivery")
            done = feed

    def _turn(self, feed: StreamFeed, items: list[Any], sizes: list[int]) -> None:
        started = time.monotonic()
        singles, typed_singles, batches = feed.plan()
        run: list[Any] = []  # messages since the last report, for the batch subscribers
        for index, value in enumerate(items):
            if type(value) is not Report:  # a message
                for subscription, callback in singles:
                    if not subscription.active:
                        continue
                    try:
                        callback(value)
                    except BaseException as exc:  # SystemExit and RecursionError included
                        feed.callback_errors += 1
                        user_code_raised(exc, f"stream {feed.name}", "a subscriber's callback")
                if typed_singles:
                    typed = value.typed if type(value) is Decoded else value
                    for subscription, callback in typed_singles:
                        if not subscription.active:
                            continue
                        try:
                            callback(typed)
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
                        feed._give_back_locked(items[index + 1 :], sizes[index + 1 :])
                    return
                continue
            self._deliver_batch(feed, batches, run)
            run = []
            if value.fetch and feed.backfill is not None:
                self._start_backfill(feed, value.gap, items[index + 1 :], sizes[index + 1 :])
                return
            self._gap(feed, value.gap)
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

    def _start_backfill(
        self, feed: StreamFeed, gap: Gap, rest: list[Any], rest_sizes: list[int]
    ) -> None:
        """Fetch the gap's messages on a thread of their own: the stream waits (its order is
        kept), the other streams of this thread go on."""
        thread = threading.Thread(
            target=self._backfill, args=(feed, gap), name=f"wsmanager-backfill-{feed.name}"
        )
        thread.daemon = True
        with self.lock:
            feed._give_back_locked(rest, rest_sizes)
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
                    feed._give_back_locked([Report(gap)], [0])
                else:
                    feed._give_back_locked(missing, [0] * len(missing))
                    feed.backfilled += len(missing)
            if feed._items or (feed._ending is not None and not feed._told):
                self.schedule_locked(feed)

    def _gap(self, feed: StreamFeed, gap: Gap) -> None:
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
