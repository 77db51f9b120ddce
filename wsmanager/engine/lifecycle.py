"""Managers and the process: destroyed at interpreter exit, forgotten in a forked child.

Every live manager is registered here (weakly). At exit each one is shut down with a bounded
join, so a script that forgets ``destroy()`` still exits promptly and quietly. After
``os.fork()`` the child's managers are told to forget their streams without touching the
parent's sockets (not even at exit); the child creates its own managers.
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from typing import Protocol

__all__ = ["AT_EXIT_JOIN_TIMEOUT", "Closable", "forget", "register"]

AT_EXIT_JOIN_TIMEOUT = 2.0  # seconds each manager's threads get at interpreter exit


class Closable(Protocol):
    def _shutdown(self, join_timeout: float | None) -> None: ...

    def _forget_after_fork(self) -> None: ...


_live: weakref.WeakSet[Closable] = weakref.WeakSet()
_registered = False
_lock = threading.Lock()


def register(manager: Closable) -> None:
    """Shut ``manager`` down at interpreter exit (unless :func:`forget` ran first)."""
    global _registered
    with _lock:
        _live.add(manager)
        if not _registered:
            atexit.register(_destroy_live)
            _registered = True


def forget(manager: Closable) -> None:
    """``manager`` was destroyed: nothing to do for it at exit."""
    _live.discard(manager)


def _destroy_live() -> None:
    for manager in list(_live):
        manager._shutdown(join_timeout=AT_EXIT_JOIN_TIMEOUT)


def _forget_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at the fork
    managers = list(_live)
    _live.clear()
    for manager in managers:
        manager._forget_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
