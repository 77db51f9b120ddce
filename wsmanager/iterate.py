"""Blocking access to a stream for scripts and notebooks: an iterator and ``collect``.

The iterator subscribes like any callback (sharing the stream's connection) and hands messages
to the consuming thread through its own bounded buffer (the oldest dropped, and counted, when the
consumer falls behind).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .core.delivery import Subscribable
from .net._closing import ClosesOnExit

__all__ = ["StreamIterator"]

_UNSET: Any = object()


class StreamIterator(ClosesOnExit):
    """The messages of one stream, in order, for the thread that iterates.

    ``next()`` waits at most ``timeout`` seconds (None: forever) and raises ``TimeoutError``
    past it; iteration stops when the stream ends (idle cleanup, destroy, :meth:`close`); an
    unrecoverable stream error (``RetriesExhaustedError``, ...) is raised from ``next()``.
    """

    def __init__(
        self,
        manager: Subscribable,
        stream: str,
        *,
        timeout: float | None = None,
        max_buffered: int = 10_000,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered}")
        self.stream = stream
        self.timeout = timeout
        self._capacity = max_buffered
        self._ready = threading.Condition(threading.Lock())  # guards everything below
        self._items: deque[Any] = deque()
        self._ended = False
        self._error: BaseException | None = None
        self.dropped = 0
        self._unsubscribe = manager.subscribe(
            stream, self._put, on_error=self._fail, on_complete=self._end
        )

    # -- the stream's dispatch thread ----------------------------------------------------------

    def _put(self, message: Any) -> None:
        with self._ready:
            if len(self._items) >= self._capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(message)
            self._ready.notify()

    def _fail(self, error: BaseException) -> None:
        with self._ready:
            self._error = error
            self._ended = True
            self._ready.notify_all()

    def _end(self) -> None:
        with self._ready:
            self._ended = True
            self._ready.notify_all()

    # -- the consumer ----------------------------------------------------------------------------

    def get(self, timeout: float | None = _UNSET) -> Any:
        """The next message; ``TimeoutError`` after ``timeout`` s, ``StopIteration`` once ended."""
        if timeout is _UNSET:
            timeout = self.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._ready:
            while not self._items:
                if self._ended:
                    if self._error is not None:
                        raise self._error
                    raise StopIteration
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"no message on {self.stream!r} within {timeout}s")
                self._ready.wait(remaining)
            return self._items.popleft()

    def __iter__(self) -> StreamIterator:
        return self

    def __next__(self) -> Any:
        return self.get()

    def close(self) -> None:
        """Unsubscribe; iteration ends after the messages already buffered. Idempotent."""
        self._unsubscribe()
        self._end()


def collect(manager: Subscribable, stream: str, count: int, timeout: float) -> list[Any]:
    """Up to ``count`` messages of ``stream``, waiting at most ``timeout`` seconds in all.

    Returns fewer when the time runs out or the stream ends; raises the stream's unrecoverable
    error if it fails before any message arrived.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    with StreamIterator(manager, stream, max_buffered=max(count, 1)) as iterator:
        while len(messages) < count:
            try:
                messages.append(iterator.get(max(0.0, deadline - time.monotonic())))
            except (TimeoutError, StopIteration):
                break
            except Exception:
                if messages:
                    break
                raise
    return messages
