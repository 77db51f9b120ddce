"""A subscriber of a stream, and how a stream ends for its subscribers (pure records)."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from .state import Gap

__all__ = [
    "Backfill",
    "CompleteCallback",
    "Ending",
    "ErrorCallback",
    "GapCallback",
    "MessageCallback",
    "Subscribable",
    "Subscription",
]

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
