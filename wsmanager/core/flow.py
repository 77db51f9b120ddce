"""How messages flow from a reader into the feeds: the reader's back-pressure budget, a payload
decoded in two forms, and the subscribe function of internal consumers that need dicts.

A reader that finds a stream's buffer full waits (TCP back-pressure then slows the exchange)
instead of dropping: :class:`Pressure` bounds how long, per connection, before the feeds that are
still full drop their oldest messages (see :meth:`StreamFeed.offer_locked
<wsmanager.core.feed.StreamFeed.offer_locked>`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["Decoded", "Pressure", "plain_subscribe"]


class Pressure:
    """One reader's back-pressure budget: how long it may wait for full stream buffers.

    An episode starts at the first wait and ends after a batch that needed none; within one,
    the reader waits ``limit`` seconds in all (over every stream of its connection), then the
    feeds that are still full drop their oldest messages. Reader thread only."""

    def __init__(self, limit: float, stopping: Callable[[], bool]) -> None:
        self.limit = limit
        self.stopping = stopping
        self.deadline: float | None = None  # the current episode's end
        self.waited = 0.0  # seconds waited in all (the read loop discounts them from silence)
        self._pressed = False  # a wait happened in this batch

    def batch_done(self) -> None:
        if not self._pressed:
            self.deadline = None
        self._pressed = False

    def start_wait(self, now: float) -> float:
        """The deadline of this wait (the episode's)."""
        self._pressed = True
        if self.deadline is None:
            self.deadline = now + self.limit
        return self.deadline


class Decoded(dict):  # type: ignore[type-arg]
    """A payload decoded twice: the dict (for the library and dict subscribers) and ``typed``
    (for the subscribers that asked for typed messages)."""

    __slots__ = ("typed",)
    typed: Any


def plain_subscribe(target: Any) -> Callable[..., Callable[[], None]]:
    """``target.subscribe``, asking a typed manager for dicts (order books, relays and
    recordings read the exchange's own keys)."""
    if getattr(getattr(target, "config", None), "typed", False):
        return functools.partial(target.subscribe, typed=False)
    return target.subscribe  # type: ignore[no-any-return]
