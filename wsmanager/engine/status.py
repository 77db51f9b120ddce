"""The manager's connection-status feed: latest state, listeners, and ordered delivery.

The feed never calls a listener while holding its lock, never calls one listener from two threads
at once, and never hands a listener the same state twice in a row. Changes are delivered by the
manager's supervisor thread (so a slow listener never stalls a socket reader); only the first,
immediate call of a new listener runs on the thread that registers it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..core._locks import make_lock
from ..core.state import ConnectionState
from ..core.usercode import ErrorCounter, call_user

__all__ = ["StatusFeed", "StatusListener"]


StatusCallback = Callable[[ConnectionState], object]


_HISTORY = 1000  # changes kept for listeners that are behind (beyond: they skip to the latest)


@dataclass(eq=False)
class StatusListener:
    callback: StatusCallback
    last: ConnectionState | None = None
    seen: int = 0  # number of the last change delivered
    busy: bool = False
    active: bool = True


class StatusFeed:
    def __init__(self) -> None:
        self._lock = make_lock("status")  # guards the fields below and every listener's
        self._current = ConnectionState.DISCONNECTED
        self._number = 0  # of the latest change
        self._changes: deque[tuple[int, ConnectionState]] = deque(maxlen=_HISTORY)
        self._listeners: list[StatusListener] = []
        self.errors = ErrorCounter()  # what listeners raised (counted in callback_errors)

    @property
    def current(self) -> ConnectionState:
        return self._current

    def set(self, state: ConnectionState) -> bool:
        """Record the latest state; True when it differs from the previous one."""
        with self._lock:
            changed = state is not self._current
            if changed:
                self._current = state
                self._number += 1
                self._changes.append((self._number, state))
        return changed

    def add(self, callback: StatusCallback) -> tuple[StatusListener, bool]:
        """Register ``callback`` and call it at once with the current state, on this thread.

        Returns the listener and whether the state moved on during that call (so the caller
        should have the supervisor deliver again).
        """
        with self._lock:
            listener = StatusListener(callback, last=self._current, seen=self._number, busy=True)
            self._listeners.append(listener)
            state = self._current
        try:
            _call(listener, state, self.errors)
        finally:  # SystemExit on the main thread passes through: the listener stays usable
            with self._lock:
                listener.busy = False
        with self._lock:
            return listener, listener.active and listener.seen != self._number

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
        """Hand every idle listener each change since its last one, in order (a listener never
        gets the same state twice in a row). Only the supervisor calls this."""
        while True:
            work: list[tuple[StatusListener, list[ConnectionState]]] = []
            with self._lock:
                for listener in self._listeners:
                    if not listener.active or listener.busy or listener.seen == self._number:
                        continue
                    states = [state for number, state in self._changes if number > listener.seen]
                    if not states:  # fell behind the history: the latest is what matters
                        states = [self._current]
                    listener.seen = self._number
                    listener.busy = True
                    work.append((listener, states))
            if not work:
                return
            for listener, states in work:
                try:
                    for state in states:
                        if state is not listener.last and listener.active:
                            listener.last = state
                            _call(listener, state, self.errors)
                finally:
                    with self._lock:
                        listener.busy = False


def _call(listener: StatusListener, state: ConnectionState, errors: ErrorCounter) -> None:
    call_user(
        listener.callback,
        state,
        where="connection status",
        what=f"a listener ({state.value})",
        counter=errors,
    )
