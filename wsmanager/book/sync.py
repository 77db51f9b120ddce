"""Binance's procedure for a local order book, as a pure state machine (no threads, no I/O).

Feed it every ``depthUpdate`` event of ``<symbol>@depth[@100ms]`` with :meth:`DepthSync.on_event`
and, when :attr:`DepthSync.needs_snapshot` says so, a REST snapshot with
:meth:`DepthSync.on_snapshot`. The procedure, from the exchange's documentation:

1. Buffer the events; note ``U`` of the first one.
2. Take a snapshot. If its ``lastUpdateId`` is older than the first buffered event (a gap between
   the snapshot and the buffer), take it again.
3. Drop buffered events with ``u <= lastUpdateId``; the book is the snapshot, its id
   ``lastUpdateId``; apply the rest of the buffer, then each new event.
4. For each event: ``u <= id`` -> ignore (old or duplicate); ``U > id + 1`` -> a gap: discard the
   book and start again at 1; else set every level (quantity 0 removes it) and ``id = u``.

While not synced the book is empty: it never holds a state the exchange never had.

Futures (``DepthSync(futures=True)``, the USD-M / COIN-M procedure): events carry ``pu``, the
``u`` of the event before, and ``U`` jumps. Buffered events chain by ``pu``; a snapshot older than
the first buffered event's ``pu`` is retaken; events with ``u < lastUpdateId`` are dropped; the
first applied event has ``pu <= lastUpdateId <= u`` (which includes ``U <= lastUpdateId <= u``:
the ids between ``pu`` and ``U`` change nothing the stream shows); every later event's ``pu``
equals the previous event's ``u``, else the book resyncs.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from .levels import Levels

__all__ = ["DepthSnapshot", "DepthSync", "EventOutcome", "SnapshotOutcome"]


@dataclass(frozen=True)
class DepthSnapshot:
    """A ``GET /api/v3/depth`` answer: price levels as the exchange's strings."""

    last_update_id: int
    bids: list[list[str]]
    asks: list[list[str]]

    @classmethod
    def parse(cls, document: Any) -> DepthSnapshot:
        """Check the shape of a decoded answer; ``ValueError`` names what is wrong."""
        if not isinstance(document, dict):
            raise ValueError(f"depth snapshot: want a JSON object, got {type(document).__name__}")
        last_update_id = document.get("lastUpdateId")
        if not isinstance(last_update_id, int) or isinstance(last_update_id, bool):
            raise ValueError(f"depth snapshot: bad lastUpdateId {last_update_id!r}")
        sides = []
        for side in ("bids", "asks"):
            levels = document.get(side)
            if not isinstance(levels, list):
                raise ValueError(f"depth snapshot: {side!r} is not a list")
            sides.append(levels)
        return cls(last_update_id, sides[0], sides[1])


class EventOutcome(enum.Enum):
    """What :meth:`DepthSync.on_event` did with an event."""

    APPLIED = "applied"  # the synced book changed
    IGNORED = "ignored"  # old or duplicate (u <= the book's or the buffer's last id)
    BUFFERED = "buffered"  # kept until a snapshot arrives
    GAP = "gap"  # U > last id + 1: the book lost sync and waits for a new snapshot
    INVALID = "invalid"  # malformed: the book lost sync (and the buffer is dropped)


class SnapshotOutcome(enum.Enum):
    """What :meth:`DepthSync.on_snapshot` did with a snapshot."""

    SYNCED = "synced"
    TOO_OLD = "too_old"  # older than the first buffered event: take another one
    INVALID = "invalid"  # malformed levels: take another one
    UNNEEDED = "unneeded"  # already synced, or no buffered event to check it against


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _event_ids(event: Any) -> tuple[int, int]:
    """``(U, u)`` of a depthUpdate event, or ``ValueError``."""
    try:
        first = event["U"]
        last = event["u"]
        bids = event["b"]
        asks = event["a"]
    except (KeyError, TypeError):
        raise ValueError(f"not a depthUpdate event: {event!r:.200}") from None
    if not (_is_int(first) and _is_int(last)) or first > last:
        raise ValueError(f"depthUpdate with bad ids U={first!r} u={last!r}")
    if not (isinstance(bids, list) and isinstance(asks, list)):
        raise ValueError("depthUpdate whose 'b' or 'a' is not a list")
    return first, last


class DepthSync:
    """The book and its sync state. Not thread-safe: the caller holds one lock around it."""

    def __init__(
        self,
        max_buffered_events: int = 1000,
        *,
        futures: bool = False,
    ) -> None:
        if max_buffered_events < 1:
            raise ValueError(f"max_buffered_events must be >= 1, got {max_buffered_events}")
        self.futures = futures  # chained by pu (USD-M, COIN-M), else by U = last u + 1
        self._fresh = False  # synced from a snapshot alone: the next event starts the chain
        self.levels = Levels()
        self.synced = False
        self.last_update_id: int | None = None  # None while not synced
        # Counters.
        self.syncs = 0  # successful syncs, the first included
        self.gaps = 0  # gaps seen (synced or buffering)
        self.too_old = 0  # snapshots older than the buffer
        self.invalid = 0  # malformed events and snapshots
        # Events waiting for a snapshot: (U, u, event), contiguous, oldest dropped when full.
        # (Futures: (pu, u, event), chained by pu.)
        self._buffer: deque[tuple[int, int, Any]] = deque(maxlen=max_buffered_events)

    @property
    def needs_snapshot(self) -> bool:
        """Not synced and at least one event buffered: a snapshot can be checked now."""
        return not self.synced and bool(self._buffer)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        """Forget the book and the buffer (for instance when the stream ended)."""
        self._lose_sync()
        self._buffer.clear()

    def on_event(self, event: Any) -> EventOutcome:
        try:
            first = event["U"]
            last = event["u"]
            bids = event["b"]
            asks = event["a"]
            if not (type(first) is int and type(last) is int and first <= last):
                first, last = _event_ids(event)  # raises, saying what is wrong
            if not (type(bids) is list and type(asks) is list):
                raise ValueError("depthUpdate whose 'b' or 'a' is not a list")
            if self.futures:
                first = event["pu"]  # the chain: the u of the event before
                if type(first) is not int:
                    raise ValueError(f"futures depthUpdate with bad pu {first!r}")
        except (KeyError, TypeError, ValueError):
            self.invalid += 1
            self.reset()
            return EventOutcome.INVALID
        # ``first`` is now U (spot: the next id must be first) or pu (futures: the id before).
        if self.synced:
            book_id: int = self.last_update_id  # type: ignore[assignment]
            if last <= book_id:
                return EventOutcome.IGNORED
            if not self.futures:
                broken = first > book_id + 1
            elif self._fresh:  # the first event after a snapshot no buffered event reached
                broken = first > book_id
            else:
                broken = first != book_id
            if broken:
                self.gaps += 1
                self._lose_sync()
                self._buffer.append((first, last, event))
                return EventOutcome.GAP
            try:
                self.levels.bids.apply(bids)
                self.levels.asks.apply(asks)
            except ValueError:
                self.invalid += 1
                self.reset()
                return EventOutcome.INVALID
            self.last_update_id = last
            self._fresh = False
            return EventOutcome.APPLIED
        if self._buffer:
            previous_last = self._buffer[-1][1]
            if last <= previous_last:
                return EventOutcome.IGNORED
            futures_break = self.futures and first != previous_last
            broken = futures_break or (not self.futures and first > previous_last + 1)
            if broken:  # what came before the gap can never be used
                self.gaps += 1
                self._buffer.clear()
        self._buffer.append((first, last, event))
        return EventOutcome.BUFFERED

    def on_snapshot(self, snapshot: DepthSnapshot) -> SnapshotOutcome:
        if self.synced or not self._buffer:
            return SnapshotOutcome.UNNEEDED
        snapshot_id = snapshot.last_update_id
        # The first buffered event must not start after the snapshot's next id. (The exchange's
        # text retakes when lastUpdateId < U; lastUpdateId == U - 1 is followed without a gap.)
        # Futures: the snapshot must not be older than the event before the first buffered one.
        if snapshot_id < self._buffer[0][0] - (0 if self.futures else 1):
            self.too_old += 1
            return SnapshotOutcome.TOO_OLD
        try:
            self.levels.load(snapshot.bids, snapshot.asks)
        except ValueError:
            self.invalid += 1
            self.levels.clear()
            return SnapshotOutcome.INVALID
        book_id = snapshot_id
        for first, last, event in self._buffer:
            if last < book_id or (last == book_id and not self.futures):
                continue  # futures: drop u < lastUpdateId (an event ending at it is applied)
            # Contiguous buffer + the check above: first <= book_id + 1 always holds here
            # (futures: pu <= lastUpdateId <= u for the first applied event).
            assert first <= book_id + 1, (first, book_id)
            try:
                self.levels.apply(event["b"], event["a"])
            except ValueError:
                self.invalid += 1
                self.reset()
                return SnapshotOutcome.INVALID
            book_id = last
        self._fresh = book_id == snapshot_id  # futures: no buffered event reached it
        self._buffer.clear()
        self.last_update_id = book_id
        self.synced = True
        self.syncs += 1
        return SnapshotOutcome.SYNCED

    def _lose_sync(self) -> None:
        self.synced = False
        self.last_update_id = None
        self.levels.clear()
