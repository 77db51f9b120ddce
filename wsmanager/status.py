"""The manager's connection-status feed: latest state, listeners, and ordered delivery.

The feed never calls a listener while holding its lock, never calls one listener from two threads
at once, and never hands a listener the same state twice in a row. Changes are delivered by the
manager's supervisor thread (so a slow listener never stalls a socket reader); only the first,
immediate call of a new listener runs on the thread that registers it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ._locks import make_lock
from .state import ConnectionState

__all__ = ["StatusFeed", "StatusListener"]

log = logging.getLogger("wsmanager")

StatusCallback = Callable[[ConnectionState], object]


@dataclass(eq=False)
class StatusListener:
    callback: StatusCallback
    last: ConnectionState | None = None
    busy: bool = False
    active: bool = True


class StatusFeed:
    def __init__(self) -> None:
        self._lock = make_lock("status")  # guards _current, _listeners and every listener's fields
        self._current = ConnectionState.DISCONNECTED
        self._listeners: list[StatusListener] = []

    @property
    def current(self) -> ConnectionState:
        return self._current

    def set(self, state: ConnectionState) -> bool:
        """Record the latest state; True when it differs from the previous one."""
        with self._lock:
            changed = state is not self._current
            self._current = state
        return changed

    def add(self, callback: StatusCallback) -> tuple[StatusListener, bool]:
        """Register ``callback`` and call it at once with the current state, on this thread.

        Returns the listener and whether the state moved on during that call (so the caller
        should have the supervisor deliver again).
        """
        with self._lock:
            listener = StatusListener(callback, last=self._current, busy=True)
            self._listeners.append(listener)
            state = self._current
        _call(listener, state)
        with self._lock:
            listener.busy = False
            return listener, listener.active and listener.last is not self._current

    def remove(self, listener: StatusListener) -> None:
        with self._lock:
            listener.active = False
            if listener in self._listeners:
                self._listeners.remove(listener)

    def clear(self) -> None:
        with self._lock:
            for listener in self._listeners:
                listener.active = False
            self._listeners.clear()

    def deliver(self) -> None:
        """Bring every idle listener up to the current state. Only the supervisor calls this."""
        while True:
            with self._lock:
                state = self._current
                targets = [
                    listener
                    for listener in self._listeners
                    if listener.active and not listener.busy and listener.last is not state
                ]
                for listener in targets:
                    listener.last = state
                    listener.busy = True
            if not targets:
                return
            for listener in targets:
                _call(listener, state)
                with self._lock:
                    listener.busy = False


def _call(listener: StatusListener, state: ConnectionState) -> None:
    try:
        listener.callback(state)
    except Exception:
        log.exception("a connection-status callback raised")
