"""The manager's housekeeping thread: status delivery, the idle sweep, handovers finished.

It sleeps until something changes (a state, a handover's replacement opening, a stream switching
to it: :meth:`Supervisor.wake`) or the next deadline (the sweep, a handover's grace); it never
polls. A step that raises, whatever it raised, is reported and counted (one policy:
:mod:`wsmanager.core.usercode`) and the thread goes on, so status delivery, idle cleanup and
handovers never stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ..core._locks import make_lock
from ..core.usercode import ErrorCounter, call_user
from .status import StatusFeed

__all__ = ["Supervisor"]

log = logging.getLogger("wsmanager")


class Supervisor:
    """One thread per manager. ``next_deadline()`` is the earliest handover deadline (or None)
    and ``advance()`` finishes the handovers that are due; ``sweep()`` runs the idle cleanup
    every ``interval`` seconds (None: never)."""

    def __init__(
        self,
        status: StatusFeed,
        *,
        next_deadline: Callable[[], float | None],
        advance: Callable[[], None],
        sweep: Callable[[], object],
        interval: float,
        idle_cleanup: bool,
        name: str,
        errors: ErrorCounter,
    ) -> None:
        self._status = status
        self._next_deadline = next_deadline
        self._advance = advance
        self._sweep = sweep
        self._interval = interval
        self._idle_cleanup = idle_cleanup
        self._name = name
        self._errors = errors
        self._wake = threading.Condition(make_lock("supervisor"))  # guards the two flags below
        self._dirty = False
        self._stopping = False
        self.thread = threading.Thread(target=self._run, name="wsmanager-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Something changed: look at the status and the handovers again (never blocks long:
        any thread, any lock below ``supervisor`` held)."""
        with self._wake:
            self._dirty = True
            self._wake.notify()

    def stop(self) -> None:
        """Deliver the final status and end (the caller joins :attr:`thread`)."""
        with self._wake:
            self._stopping = True
            self._wake.notify()

    def after_fork(self) -> None:
        """In a forked child: a new condition (another thread may have held it at the fork)."""
        self._wake = threading.Condition(make_lock("supervisor"))

    def _run(self) -> None:
        while not call_user(
            self._loop, where=self._name, what="the supervisor", counter=self._errors
        ):
            with self._wake:  # a step that fails every time must not spin
                if not self._stopping:
                    self._wake.wait(0.05)

    def _loop(self) -> None:
        next_sweep = time.monotonic() + self._interval
        while True:
            handover_at = self._next_deadline()  # before our lock: the registry's comes first
            wake_at = next_sweep if handover_at is None else min(next_sweep, handover_at)
            with self._wake:
                while not (self._dirty or self._stopping):
                    remaining = wake_at - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                stopping = self._stopping
                self._dirty = False
            if stopping:
                break
            self._advance()
            self._status.deliver()
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + self._interval
                if self._idle_cleanup:
                    try:
                        self._sweep()
                    except Exception:  # never let the sweep kill status delivery
                        log.exception("the idle sweep failed")
        self._status.deliver()  # the final "disconnected"
        self._status.clear()
