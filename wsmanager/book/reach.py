"""The frozen-book check: a snapshot the stream never reaches is retaken (pure, no threads).

A snapshot's ``lastUpdateId`` far in the future (a hostile or broken server) would make the
book ignore every event as "old" (``u <= lastUpdateId``) while it reports "synced": frozen. After
a sync whose id came from the snapshot alone (no buffered event went past it), the stream must
reach that id — an event with ``u >= lastUpdateId`` — within ``max(events, seconds)``: at least
``events`` events *and* ``seconds`` have gone by (100 and 10 s by default, the contract's). If it
does not, :meth:`SnapshotReach.overdue` says so and the book retakes the snapshot.
"""

from __future__ import annotations

__all__ = ["REACH_EVENTS", "REACH_SECONDS", "SnapshotReach"]

REACH_EVENTS = 100
REACH_SECONDS = 10.0


class SnapshotReach:
    """Watches one synced book until the stream reaches its snapshot's id.

    Not thread-safe: the book calls it under its lock. ``armed`` is the only attribute the
    event path reads when nothing is pending (a plain bool, checked per event).
    """

    def __init__(self, events: int = REACH_EVENTS, seconds: float = REACH_SECONDS) -> None:
        if isinstance(events, bool) or not isinstance(events, int) or events < 1:
            raise ValueError(f"snapshot_reach_events must be an int >= 1, got {events!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ValueError(f"snapshot_reach_seconds must be a number > 0, got {seconds!r}")
        self.events = events
        self.seconds = float(seconds)
        self.armed = False  # a snapshot id the stream has not reached yet
        self.target = 0
        self.retaken = 0  # snapshots given up as never reached
        self._since = 0.0
        self._seen = 0

    def synced(self, snapshot_id: int, book_id: int, now: float) -> None:
        """The book synced from a snapshot of ``snapshot_id`` and now stands at ``book_id``:
        armed unless a buffered event already went past the snapshot."""
        self.armed = book_id <= snapshot_id
        self.target = snapshot_id
        self._since = now
        self._seen = 0

    def describe(self) -> str:
        """Why the last snapshot was given up, for the log."""
        return (
            f"the stream did not reach the snapshot's lastUpdateId {self.target} within "
            f"{self.events} events and {self.seconds:g}s"
        )

    def disarm(self) -> None:
        """The stream reached the book's id (an event was applied), or the book lost sync."""
        self.armed = False

    def overdue(self, last: int, now: float) -> bool:
        """An event ending at ``last`` (``u``) was ignored as old by a synced book: True when
        the snapshot must be retaken (the check disarms itself then)."""
        if not self.armed:
            return False
        if last >= self.target:
            self.armed = False
            return False
        self._seen += 1
        if self._seen >= self.events and now - self._since >= self.seconds:
            self.armed = False
            self.retaken += 1
            return True
        return False
