"""One make-before-break handover of a connection group: its phases and legal moves, in one table.

A handover starts when a connection is old (``max_connection_age``) or the exchange announced
``serverShutdown``: a replacement connection opens with the same streams, each stream's feed
switches to it once it continues what the old one delivered, then the old one closes (1000).

======================  ======================  ===================================================
phase                   event                   next phase
======================  ======================  ===================================================
``STARTED``             ``REPLACEMENT_OPEN``    ``OPEN``: streams switch as they catch up
``STARTED``/``OPEN``    ``OLD_LOST``            ``PROMOTED``: the replacement is all there is
``OPEN``                ``ALL_SWITCHED``        ``PROMOTED``
``OPEN``                ``GRACE_OVER``          ``PROMOTED``: quiet streams switch at once
``STARTED``/``OPEN``    ``REPLACEMENT_FAILED``  ``ABANDONED``: the old connection carries on
``STARTED``             ``OPEN_TIMED_OUT``      ``ABANDONED``: no replacement after ``OPEN_WITHIN``
``OPEN``                ``REPLACEMENT_LOST``    ``ABANDONED``
``STARTED``/``OPEN``    ``GROUP_CLOSED``        ``ABANDONED``: nothing left to hand over
======================  ======================  ===================================================

Any other move raises :class:`IllegalMove`: the registry asks the table, it never looks at flags.
``PROMOTED`` and ``ABANDONED`` are final. What each outcome does (switching feeds, stopping a
connection, re-arming the old one's rotation) is the registry's (:mod:`wsmanager.engine.registry`);
this module is pure and owns no lock: the registry's lock guards every handover.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "HANDOVER_GRACE",
    "OPEN_WITHIN",
    "REARM_AFTER",
    "Event",
    "Handover",
    "IllegalMove",
    "Phase",
]

HANDOVER_GRACE = 2.0  # seconds a handover waits, once the replacement is open, for quiet streams
REARM_AFTER = 30.0  # seconds before an abandoned handover's connection may ask for rotation again
# Seconds a replacement has to open. One that keeps retrying (max_retry_attempts=None) while the
# old connection stays healthy would otherwise keep the handover started, and cost an attempt per
# backoff window, until the old connection drops.
OPEN_WITHIN = 30.0


class Phase(enum.Enum):
    STARTED = "started"  # the replacement is connecting
    OPEN = "replacement open"  # streams switch as they catch up
    PROMOTED = "promoted"  # final: the replacement carries every stream, the old one closes
    ABANDONED = "abandoned"  # final: the replacement is gone, the old connection carries on


class Event(enum.Enum):
    REPLACEMENT_OPEN = "the replacement's socket is open"
    ALL_SWITCHED = "every stream switched"
    GRACE_OVER = "the grace for quiet streams is over"
    OLD_LOST = "the old connection went"
    REPLACEMENT_FAILED = "the replacement failed"
    OPEN_TIMED_OUT = "the replacement did not open in time"
    REPLACEMENT_LOST = "the replacement's socket dropped"
    GROUP_CLOSED = "the group closed"


_MOVES: dict[tuple[Phase, Event], Phase] = {
    (Phase.STARTED, Event.REPLACEMENT_OPEN): Phase.OPEN,
    (Phase.STARTED, Event.OLD_LOST): Phase.PROMOTED,
    (Phase.STARTED, Event.REPLACEMENT_FAILED): Phase.ABANDONED,
    (Phase.STARTED, Event.OPEN_TIMED_OUT): Phase.ABANDONED,
    (Phase.STARTED, Event.GROUP_CLOSED): Phase.ABANDONED,
    (Phase.OPEN, Event.ALL_SWITCHED): Phase.PROMOTED,
    (Phase.OPEN, Event.GRACE_OVER): Phase.PROMOTED,
    (Phase.OPEN, Event.OLD_LOST): Phase.PROMOTED,
    (Phase.OPEN, Event.REPLACEMENT_FAILED): Phase.ABANDONED,
    (Phase.OPEN, Event.REPLACEMENT_LOST): Phase.ABANDONED,
    (Phase.OPEN, Event.GROUP_CLOSED): Phase.ABANDONED,
}


class IllegalMove(RuntimeError):
    """An event the handover's phase has no move for (a bug of ours)."""


C = TypeVar("C")


@dataclass(eq=False)
class Handover(Generic[C]):
    """The handover of one group from ``old`` to ``replacement`` (connections of type ``C``)."""

    old: C
    replacement: C
    reason: str
    started_at: float  # monotonic
    phase: Phase = Phase.STARTED
    opened_at: float | None = None  # monotonic, when the replacement's socket opened
    history: list[tuple[Phase, Event, Phase]] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.phase in (Phase.PROMOTED, Phase.ABANDONED)

    def can(self, event: Event) -> bool:
        return (self.phase, event) in _MOVES

    def move(self, event: Event, now: float) -> Phase:
        """Take ``event``; return the new phase. Raises :class:`IllegalMove` if not allowed."""
        try:
            after = _MOVES[(self.phase, event)]
        except KeyError:
            raise IllegalMove(
                f"handover ({self.reason}) in phase {self.phase.value!r} has no move for "
                f"{event.name}"
            ) from None
        self.history.append((self.phase, event, after))
        if after is Phase.OPEN:
            self.opened_at = now
        self.phase = after
        return after

    def deadline(self) -> float | None:
        """When this handover must move on by itself (monotonic): the replacement's time to
        open while it is starting (then ``OPEN_TIMED_OUT``), the grace for quiet streams once it
        is open (then ``GRACE_OVER``); None when final."""
        if self.phase is Phase.STARTED:
            return self.started_at + OPEN_WITHIN
        if self.phase is Phase.OPEN and self.opened_at is not None:
            return self.opened_at + HANDOVER_GRACE
        return None
