"""History, then live: ``subscribe(stream, callback, since=...)`` as an adapter around the
manager's own ``subscribe``.

The live stream is subscribed FIRST and its messages held (at most ``max_buffered_messages``;
past that the oldest are dropped and ``on_error`` gets a :class:`HistoryOverflowError`) while a
thread of its own loads the history and calls ``callback`` with it. Then that thread delivers the
held messages, bridging any gap between the history's end and them from REST, and hands over:
from then on the stream's own delivery thread calls ``callback``. The seam rule:

- ``@aggTrade``: every id once, in order (a live id at or below the last delivered is dropped);
- ``@kline_<interval>``: one closed candle per open time, then the live candle's updates (a live
  message for a candle at or before the last closed one delivered is dropped).

The thread ends once it has handed over, on ``unsubscribe()``, and when the stream completes or
fails (``destroy``); an exception in it (a source unreachable after retries) goes to
``on_error`` and the live stream goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..core._locks import make_lock
from ..core.usercode import call_user
from .convert import rescaled
from .load import NO_END, HistoryLoader
from .streams import HistoryError, HistoryOverflowError, HistoryStream

__all__ = ["HistorySeam"]

log = logging.getLogger("wsmanager.history")

Subscribe = Callable[
    [Callable[[Any], None], Callable[[Exception], None], Callable[[], None]],
    Callable[[], None],
]


class HistorySeam:
    """One ``subscribe(..., since=...)``: history, the held live messages, then live."""

    def __init__(
        self,
        stream: HistoryStream,
        since: int,
        loader: HistoryLoader,
        callback: Callable[[Any], object],
        on_error: Callable[[Exception], object] | None,
        on_complete: Callable[[], object] | None,
        *,
        limit: int,
        on_end: Callable[[HistorySeam], object] | None = None,
        live_scale: int = 1,
    ) -> None:
        self.stream = stream
        self.since = since
        self.loader = loader
        self.callback = callback
        self.on_error = on_error
        self.on_complete = on_complete
        self.limit = limit
        self.on_end = on_end
        self.scale = loader.scale  # of what is delivered: 1 ms, 1000 µs
        self.live_scale = live_scale  # of the live stream (the manager's time_unit option)
        self._lock = make_lock("history")  # guards _held, _dropped, _passing
        self._wake = threading.Condition(self._lock)
        self._held: deque[Any] = deque()
        self._dropped = 0
        self._passing = False
        self._stop = loader.rest.stop
        self._unsubscribe_live: Callable[[], None] | None = None
        # The seam's position: touched by the history thread, then (after the hand-over under
        # the lock) by the delivery thread only.
        self._last_id: int | None = None
        self._last_closed: int | None = None  # ms: open time of the last closed candle
        self._first_live_seen = False
        self.callback_errors = 0
        self.thread = threading.Thread(
            target=self._run, name=f"wsmanager-history-{stream.name}", daemon=True
        )

    def start(self, subscribe: Subscribe) -> None:
        self._unsubscribe_live = subscribe(self._on_live, self._on_live_error, self._on_complete)
        self.thread.start()

    def stop(self, join: bool = True) -> None:
        """Unsubscribe the live stream and end the history thread (idempotent)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self._unsubscribe_live is not None:
            self._unsubscribe_live()
        if join and self.thread is not threading.current_thread() and self.thread.is_alive():
            self.thread.join()

    # -- the live side (the stream's delivery thread) --------------------------------------------

    def _on_live(self, message: Any) -> None:
        with self._wake:
            if not self._passing:
                self._held.append(message)
                if len(self._held) > self.limit:
                    self._held.popleft()
                    self._dropped += 1
                self._wake.notify_all()
                return
        self._deliver_live(message, catch=False)

    def _on_live_error(self, error: Exception) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._report(error)

    def _on_complete(self) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        if self.on_complete is not None:
            call_user(self.on_complete, where=f"stream {self.stream.name}", what="on_complete")

    # -- delivery ----------------------------------------------------------------------------------

    def _call(self, message: Any) -> None:
        where = f"stream {self.stream.name}"
        if not call_user(self.callback, message, where=where, what="a callback (history)"):
            self.callback_errors += 1  # SystemExit included: the thread goes on

    def _deliver_history(self, batch: Iterable[Any]) -> None:
        scale = self.scale
        for message in batch:
            if self._stop.is_set():
                return
            if self.stream.kind == "aggTrade":
                self._last_id = message["a"]
            else:
                self._last_closed = message["k"]["t"] // scale
            self._call(message)

    def _deliver_live(self, message: Any, catch: bool) -> None:
        try:
            if self.stream.kind == "aggTrade":
                number = message["a"]
                if self._last_id is not None and number <= self._last_id:
                    return
                self._last_id = number
            else:
                opened = message["k"]["t"] // self.live_scale
                if self._last_closed is not None and opened <= self._last_closed:
                    return
                if message["k"].get("x") is True:
                    self._last_closed = opened
        except (KeyError, TypeError):
            pass  # not a trade or candle (an error event): delivered as is
        if self.scale != self.live_scale and isinstance(message, dict):
            with contextlib.suppress(KeyError, TypeError):  # not a trade or candle: as is
                message = rescaled(message, self.stream.kind, self.live_scale, self.scale)
        if catch:
            self._call(message)
        else:
            self.callback(message)

    def _bridge(self, message: Any) -> None:
        """Fetch from REST what lies between the last delivered message and ``message``."""
        try:
            if self.stream.kind == "aggTrade":
                number = message["a"]
                if self._last_id is not None and number > self._last_id + 1:
                    for batch in self.loader.trades_between(self._last_id + 1, number - 1):
                        self._deliver_history(batch)
            else:
                opened, length = message["k"]["t"] // self.live_scale, self.stream.interval_ms
                if self._last_closed is not None and opened > self._last_closed + length:
                    for batch in self.loader.klines_between(self._last_closed + length, opened):
                        self._deliver_history(batch)
        except (KeyError, TypeError):
            return

    # -- the history thread ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            try:
                for batch in self.loader.load(self.since, NO_END):
                    if self._stop.is_set():
                        return
                    self._deliver_history(batch)
                if self._last_id is None and self.loader.next_id is not None:
                    self._last_id = self.loader.next_id - 1  # no trade since: bridge from here
            except BaseException as exc:
                if self._stop.is_set():
                    return
                self._report(exc)
            self._hand_over()
        except BaseException as exc:  # never lose the error, whatever it is
            if not self._stop.is_set():
                self._report(exc)
        finally:
            self.loader.close()
            if self.on_end is not None:
                self.on_end(self)

    def _hand_over(self) -> None:
        """Deliver the held live messages (bridged), until none is left: then pass through."""
        while True:
            with self._wake:
                while not self._held and not self._stop.is_set() and self._needs_first_live():
                    self._wake.wait()
                if self._stop.is_set():
                    return
                held = list(self._held)
                self._held.clear()
                dropped, self._dropped = self._dropped, 0
                if not held:
                    self._passing = True
                    return
            if dropped:
                self._report(HistoryOverflowError(self.stream.name, self.limit, dropped))
            for message in held:
                if self._stop.is_set():
                    return
                try:
                    self._bridge(message)
                except HistoryError as exc:
                    if self._stop.is_set():
                        return
                    self._report(exc)
                self._deliver_live(message, catch=True)
            self._first_live_seen = True

    def _needs_first_live(self) -> bool:
        """Until one live message went through the bridge, the seam is not closed: live may
        have started after the history ended."""
        return not self._first_live_seen

    def _report(self, error: BaseException) -> None:
        if not isinstance(error, Exception):  # SystemExit and the like, from a server's answer
            error = HistoryError(self.stream.name, f"the history thread caught {error!r}")
        if self.on_error is None:
            log.error("%s: %s", self.stream.name, error)
            return
        call_user(self.on_error, error, where=f"stream {self.stream.name}", what="on_error")
