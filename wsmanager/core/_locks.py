"""The locks of wsmanager, in one order, and a checker for that order.

Every lock is made by :func:`make_lock` with its rank; a thread may only acquire a lock whose rank
is higher than every lock it holds (``docs/threading.md`` lists them). With the environment
variable ``WSMANAGER_CHECK_LOCKS=1`` (the test suite sets it) each blocking acquire checks the
order and raises :class:`LockOrderError` on an inversion, a deadlock waiting to happen; otherwise
:func:`make_lock` returns a plain ``threading.Lock`` and costs nothing.
"""

from __future__ import annotations

import os
import threading
from typing import Any

__all__ = ["RANKS", "LockOrderError", "make_lock"]

# rank: lower is taken first. Leaf locks (never held while taking another) come last.
RANKS = {
    "registry": 10,  # StreamRegistry: streams, groups, counters
    "userdata-service": 12,  # UserDataStreams: its sessions by URL
    "userdata": 15,  # UserDataSession: accounts, connections, requests in flight
    "delivery": 20,  # DeliveryLoop: one group's feeds and turns
    "status": 30,  # StatusFeed: latest state and listeners
    "supervisor": 40,  # WSManager._wake: the supervisor's flags
    "connection": 50,  # Connection: its socket, handed between reader and stop()
    "gap-listeners": 60,  # WSManager: changes of the on_gap tuple
    "books": 65,  # WSManager: the order books it made
    "history-seams": 66,  # WSManager: its running history seams (subscribe(..., since=...))
    "host-budgets": 70,  # HostBudgets: attempts per host, process-wide
    "history": 90,  # HistorySeam: live messages held while history loads (a leaf)
    "user-errors": 95,  # ErrorCounter: what user code raised (a leaf)
}

CHECKING = os.environ.get("WSMANAGER_CHECK_LOCKS") == "1"


class LockOrderError(RuntimeError):
    """A thread took locks against their documented order."""


_held = threading.local()


class _CheckedLock:
    """A ``threading.Lock`` that checks the order of acquisition per thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rank = RANKS[name]
        self._lock = threading.Lock()

    def _stack(self) -> list[_CheckedLock]:
        stack: list[_CheckedLock] | None = getattr(_held, "stack", None)
        if stack is None:
            stack = _held.stack = []
        return stack

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        stack = self._stack()
        if blocking and stack and max(lock.rank for lock in stack) >= self.rank:
            held = ", ".join(lock.name for lock in stack)
            raise LockOrderError(f"acquiring {self.name!r} while holding {held}")
        acquired = self._lock.acquire(blocking, timeout)
        if acquired:
            stack.append(self)
        return acquired

    def release(self) -> None:
        stack = self._stack()
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is self:
                del stack[index]
                break
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def make_lock(name: str) -> Any:
    """A lock of the documented rank ``name`` (a ``threading.Lock`` unless checking)."""
    if name not in RANKS:
        raise KeyError(f"unknown lock {name!r}; add it to RANKS and docs/threading.md")
    return _CheckedLock(name) if CHECKING else threading.Lock()
