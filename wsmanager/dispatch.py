"""Handing messages from a stream's reader thread to its subscribers' callbacks.

Each stream owns one dispatch thread. The reader thread only appends raw frames to a bounded
inbox (oldest dropped on overflow), so a slow callback never stops the reader from answering
pings. The dispatch thread takes the inbox in batches, decodes each frame once, and calls every
active subscriber in subscription order, one message at a time. It also runs each subscriber's
``on_error``/``on_complete`` when the stream ends, after the last message.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Ending", "Inbox", "MessageDispatcher", "Subscription"]

log = logging.getLogger("wsmanager")

MessageCallback = Callable[[Any], object]
ErrorCallback = Callable[[Exception], object]
CompleteCallback = Callable[[], object]


@dataclass(eq=False)
class Subscription:
    """One subscriber of one stream. ``active`` is switched off, once, under the registry lock."""

    stream: str
    callback: MessageCallback
    on_error: ErrorCallback | None = None
    on_complete: CompleteCallback | None = None
    active: bool = field(default=True)

    def deactivate(self) -> None:
        """No callback of this subscription starts after this returns (a running one finishes):
        the dispatcher calls ``callback`` without checking ``active``, so swap in a no-op."""
        self.active = False
        self.callback = _ignore


def _ignore(message: Any) -> None:
    pass


class Ending(enum.Enum):
    """Why a stream's dispatch thread ends, and so what its subscribers are told."""

    UNSUBSCRIBED = "unsubscribed"  # nobody left to tell
    COMPLETED = "completed"  # idle cleanup or destroy: on_complete()
    FAILED = "failed"  # unrecoverable: on_error(exc)


class Inbox:
    """A bounded FIFO of raw frames between one producer and one consumer thread.

    ``on_first_put`` runs once, on the producer's thread, before the first item is queued: the
    dispatcher uses it to start its thread only when there is something to dispatch.
    """

    def __init__(self, capacity: int, on_first_put: Callable[[], None] | None = None) -> None:
        self._capacity = capacity
        self._on_first_put = on_first_put
        self._items: deque[bytes] = deque()
        self._ready = threading.Condition(threading.Lock())  # guards _items, _closed, _waiting
        self._closed = False
        self._waiting = False

    def put(self, item: bytes) -> bool:
        """Append ``item``; return True if the oldest item had to be dropped to make room."""
        if self._on_first_put is not None:
            self._on_first_put()
            self._on_first_put = None
        with self._ready:
            dropped = len(self._items) >= self._capacity
            if dropped:
                self._items.popleft()
            self._items.append(item)
            if self._waiting:
                self._ready.notify()
        return dropped

    def take_all(self) -> list[bytes] | None:
        """Wait for items and take them all; None once closed (remaining items are discarded)."""
        with self._ready:
            while not self._items and not self._closed:
                self._waiting = True
                self._ready.wait()
                self._waiting = False
            if self._closed:
                self._items.clear()
                return None
            batch = list(self._items)
            self._items.clear()
            return batch

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    def __len__(self) -> int:
        return len(self._items)


def decode_json_stdlib(frame: bytes) -> Any:
    """Decode a text frame: strict UTF-8, then JSON. Raises ``ValueError`` on either failure."""
    return json.loads(frame.decode("utf-8"))


try:  # the "fast" extra: orjson validates UTF-8 and parses in one pass, about 3x faster
    import orjson

    def decode_json_orjson(frame: bytes) -> Any:
        """Like :func:`decode_json_stdlib`, with orjson (its errors are ``ValueError`` too)."""
        return orjson.loads(frame)

    decode_json = decode_json_orjson
except ImportError:  # pragma: no cover - depends on the environment
    decode_json = decode_json_stdlib


class MessageDispatcher:
    """The dispatch thread of one stream and the counters only it writes."""

    def __init__(
        self,
        stream: str,
        capacity: int,
        subscribers: Callable[[], tuple[Subscription, ...]],
        decode: Callable[[bytes], Any] = decode_json,
    ) -> None:
        self.stream = stream
        self.inbox = Inbox(capacity, on_first_put=self.start)
        self._subscribers = subscribers
        self._decode = decode
        self._ending = Ending.UNSUBSCRIBED
        self._error: Exception | None = None
        self._final_subscribers: tuple[Subscription, ...] = ()
        # Written only by the dispatch thread.
        self.invalid_messages = 0
        self.callback_errors = 0
        self.thread: threading.Thread | None = None  # made and started on first need
        self._start_lock = threading.Lock()  # guards thread: reader and registry both start it

    def start(self) -> None:
        """Start the thread, once. Idle streams never need it: it starts with the first
        message, or at the end to run on_error/on_complete callbacks."""
        with self._start_lock:
            if self.thread is None:
                self.thread = threading.Thread(
                    target=self._run, name=f"wsmanager-dispatch-{self.stream}", daemon=True
                )
                self.thread.start()

    def finish(
        self,
        ending: Ending,
        subscribers: tuple[Subscription, ...] = (),
        error: Exception | None = None,
    ) -> None:
        """Stop after the current message; then tell ``subscribers`` how the stream ended."""
        self._ending = ending
        self._error = error
        self._final_subscribers = subscribers
        self.inbox.close()
        if ending is not Ending.UNSUBSCRIBED and any(
            s.on_error if ending is Ending.FAILED else s.on_complete for s in subscribers
        ):
            self.start()  # someone must be told, on this stream's thread

    def _run(self) -> None:
        decode = self._decode
        while (batch := self.inbox.take_all()) is not None:
            # Once per batch: a subscriber added meanwhile starts with the next batch; one
            # removed meanwhile has had its callback swapped for a no-op (deactivate()).
            subscribers = self._subscribers()
            for frame in batch:
                try:
                    message = decode(frame)
                except ValueError as exc:
                    self.invalid_messages += 1
                    log.warning("stream %s: skipped a frame that is not JSON: %s", self.stream, exc)
                    continue
                for subscription in subscribers:
                    try:
                        subscription.callback(message)
                    except Exception:
                        self.callback_errors += 1
                        log.exception("stream %s: a subscriber's callback raised", self.stream)
        self._tell_ending()

    def _tell_ending(self) -> None:
        for subscription in self._final_subscribers:
            if self._ending is Ending.FAILED and subscription.on_error is not None:
                _call_quietly(self.stream, subscription.on_error, self._error)
            elif self._ending is Ending.COMPLETED and subscription.on_complete is not None:
                _call_quietly(self.stream, subscription.on_complete)


def _call_quietly(stream: str, function: Callable[..., object], *args: object) -> None:
    try:
        function(*args)
    except Exception:
        log.exception("stream %s: an on_error/on_complete callback raised", stream)
