"""What a user data session keeps per account and per request in flight (no I/O, no threads).

An :class:`Account` is one API key's subscription: where it is live (connection ->
``subscriptionId``), where a subscribe is in flight, since when it is down (for the ``Gap`` and
``health()``), its transient retries, and the last events it delivered (an event both connections
deliver during a handover reaches the callback once). :func:`retry_after` says whether a refused
subscribe is worth trying again (the exchange's rate limits, a busy server) and after how long.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..core.delivery import StreamFeed
from .keys import Credentials
from .protocol import Answer

if TYPE_CHECKING:
    from .connection import WsApiConnection

__all__ = [
    "CLOCK_ERROR",
    "MAX_TRANSIENT_RETRIES",
    "REMEMBERED_EVENTS",
    "STREAM",
    "Account",
    "PendingRequest",
    "retry_after",
]

STREAM = "userData"
REMEMBERED_EVENTS = 256  # per account: an event seen again within these is a duplicate
CLOCK_ERROR = -1021
MAX_TRANSIENT_RETRIES = 3  # per refusal episode: 429/418/5xx, -1003, -1007, -1008
_TRANSIENT_CODES = frozenset({-1003, -1007, -1008})  # too many requests, timeout, server busy


def retry_after(answer: Answer) -> float | None:
    """Seconds the exchange asks us to wait before trying again (0: as soon as the backoff
    allows), or None when the refusal is final (a bad key, a bad signature...)."""
    status = answer.status or 0
    if status in (418, 429) or status >= 500 or answer.code in _TRANSIENT_CODES:
        return max(0.0, answer.retry_after_ms / 1000) if answer.retry_after_ms else 0.0
    return None


@dataclass(eq=False)
class Account:
    """One API key's subscription (reference counted by its ``user_data`` calls)."""

    credentials: Credentials
    feed: StreamFeed
    live: dict[WsApiConnection, int] = field(default_factory=dict)  # -> subscriptionId
    asked: set[WsApiConnection] = field(default_factory=set)  # subscribe (or time) in flight
    lost_at_ms: int | None = None  # exchange time since which events may be missing
    waiting_since: float | None = None  # monotonic: since when no subscription is live
    clock_retried: bool = False
    retries: int = 0  # transient refusals in a row
    retry_at: float | None = None  # monotonic: when to subscribe again on retry_on
    retry_on: WsApiConnection | None = None
    recent: deque[str] = field(default_factory=deque)
    recent_set: set[str] = field(default_factory=set)
    events: int = 0
    duplicates: int = 0
    gaps: int = 0
    resubscribes: int = 0

    def first_time(self, key: str) -> bool:
        """True the first time ``key`` (an event's canonical JSON) is seen lately."""
        if key in self.recent_set:
            self.duplicates += 1
            return False
        self.recent.append(key)
        self.recent_set.add(key)
        if len(self.recent) > REMEMBERED_EVENTS:
            self.recent_set.discard(self.recent.popleft())
        return True


@dataclass(frozen=True)
class PendingRequest:
    """A request sent and not answered yet."""

    connection: WsApiConnection
    method: str
    api_key: str | None
    sent_at: float  # monotonic
    sent_ms: int  # our epoch ms
