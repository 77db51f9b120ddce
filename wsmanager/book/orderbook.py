"""``OrderBook``: a local order book kept in sync with a depth stream and REST snapshots.

Threads. Stream events arrive on the stream's callback thread (the manager's), which applies
them under the book's one lock (microseconds per event) or buffers them while a snapshot is
due. Snapshots are taken on a small worker thread per book, started when a snapshot is needed
and ending when the book is synced (or closed), so the REST call (seconds, when the exchange is
slow or throttles) never holds back the stream's callbacks, and a synced book costs no thread.
``on_update`` callbacks run after the lock is released, one at a time: on the stream's thread
after an event, on the worker after a sync; calls that would overlap are merged into one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from ..backoff import BackoffPolicy
from ..core.usercode import ErrorCounter, call_user, user_code_raised
from ..net._closing import ClosesOnExit
from .levels import Level
from .reach import REACH_EVENTS, REACH_SECONDS, SnapshotReach
from .records import BookStats, BookView, depth_stream
from .rest import (
    DEFAULT_RETRY,
    DEPTH_PATHS,
    RestClient,
    RestRejectedError,
    SnapshotFetcher,
    WeightBudget,
)
from .sync import DepthSync, EventOutcome, SnapshotOutcome

__all__ = ["BookStats", "BookView", "OrderBook", "SubscribeFunction", "depth_stream"]

log = logging.getLogger("wsmanager.book")

SubscribeFunction = Callable[..., Callable[[], None]]
"""``subscribe(stream, callback, on_error=None, on_complete=None) -> unsubscribe``, like
:meth:`wsmanager.WSManager.subscribe`."""
UpdateCallback = Callable[["OrderBook"], object]
ErrorCallback = Callable[[Exception], object]


class OrderBook(ClosesOnExit):
    """A local order book of ``symbol``, following Binance's documented procedure.

    ``subscribe`` is :meth:`wsmanager.WSManager.subscribe` or anything with its signature;
    ``rest_url`` is the REST API's base (``https://api.binance.com``); ``limit`` the depth of
    each snapshot (1..5000; its request weight is 5, 25, 50 or 250); ``speed`` ``"100ms"`` or
    ``"1000ms"``. ``market="usdm"`` or ``"coinm"`` follows the futures procedure (events
    chained by ``pu``; snapshots from ``depth_path``, default ``/fapi/v1/depth`` or
    ``/dapi/v1/depth``; speeds ``"100ms"``, ``"250ms"``, ``"500ms"``). While not synced the
    book reads as empty (``bids()`` is ``[]``, ``best_bid()`` is None): it never shows a state
    the exchange never had. ``on_error(exc)`` is told when the book can never sync (its stream
    failed for good, or the exchange refused the snapshot).
    A snapshot whose ``lastUpdateId`` the stream does not reach within
    ``max(snapshot_reach_events events, snapshot_reach_seconds)`` is retaken (a book never stays
    "synced" while frozen by a snapshot from the future).
    """

    def __init__(
        self,
        subscribe: SubscribeFunction,
        symbol: str,
        *,
        rest_url: str,
        limit: int = 1000,
        speed: str = "100ms",
        on_error: ErrorCallback | None = None,
        market: str = "spot",
        depth_path: str | None = None,
        # REST
        session: requests.Session | None = None,
        proxy: str | None = None,
        request_timeout: float = 10.0,
        retry: BackoffPolicy = DEFAULT_RETRY,
        min_snapshot_interval: float = 1.0,
        budget: WeightBudget | None = None,
        # Limits
        max_buffered_events: int = 1000,
        snapshot_reach_events: int = REACH_EVENTS,
        snapshot_reach_seconds: float = REACH_SECONDS,
    ) -> None:
        self.stream = depth_stream(symbol, speed, market)
        self.market = market
        self.symbol = symbol.upper()
        if min_snapshot_interval < 0:
            raise ValueError(f"min_snapshot_interval must be >= 0, got {min_snapshot_interval}")
        self._client = RestClient(
            rest_url, session=session, timeout=request_timeout, budget=budget, proxy=proxy
        )
        self._fetcher = SnapshotFetcher(
            self._client,
            self.symbol,
            limit,
            min_interval=min_snapshot_interval,
            retry=retry,
            path=depth_path or DEPTH_PATHS[market],
        )
        self._on_error = on_error
        self._stop = threading.Event()  # set by close(): ends the worker's waits
        self._lock = threading.Lock()  # guards everything below
        self._changed = threading.Condition(self._lock)  # sync state changes, for wait_synced
        self._sync = DepthSync(max_buffered_events, futures=market != "spot")
        self._reach = SnapshotReach(snapshot_reach_events, snapshot_reach_seconds)
        self._closed = False  # close() was called
        self._ended = False  # the stream completed (idle cleanup, destroy): nothing more comes
        self._error: Exception | None = None
        self._worker: threading.Thread | None = None
        self._worker_running = False
        self._callbacks: tuple[_Entry, ...] = ()
        self._notify_pending = False
        self._notifying = False
        self._last_change: float | None = None
        self._errors = ErrorCounter()  # what on_update / on_error callbacks raised
        self._unsubscribe: Callable[[], None] | None = None
        try:
            self._unsubscribe = subscribe(
                self.stream,
                self._on_event,
                on_error=self._on_stream_error,
                on_complete=self._on_stream_complete,
            )
        except BaseException:
            self._client.close()
            raise

    # -- reading ---------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._sync.synced

    @property
    def last_update_id(self) -> int | None:
        """The id of the last applied update (``u``), None while not synced."""
        with self._lock:
            return self._sync.last_update_id

    @property
    def resyncs(self) -> int:
        """Syncs after the first (each one follows a gap or a malformed event)."""
        with self._lock:
            return max(0, self._sync.syncs - 1)

    @property
    def unreached_snapshots(self) -> int:
        """Snapshots retaken because the stream never reached their ``lastUpdateId``."""
        with self._lock:
            return self._reach.retaken

    @property
    def closed(self) -> bool:
        """``close()`` was called, or the stream ended (idle cleanup, the manager destroyed)."""
        with self._lock:
            return self._closed or self._ended

    @property
    def error(self) -> Exception | None:
        """Why the book can never sync again, or None."""
        with self._lock:
            return self._error

    def best_bid(self) -> Level | None:
        """``(price, quantity)`` of the highest bid, or None (none, or not synced)."""
        with self._lock:
            return self._sync.levels.bids.best() if self._sync.synced else None

    def best_ask(self) -> Level | None:
        """``(price, quantity)`` of the lowest ask, or None (none, or not synced)."""
        with self._lock:
            return self._sync.levels.asks.best() if self._sync.synced else None

    def bids(self, n: int | None = None) -> list[Level]:
        """The best ``n`` bids (all when None), highest first; ``[]`` while not synced."""
        with self._lock:
            return self._sync.levels.bids.top(n) if self._sync.synced else []

    def asks(self, n: int | None = None) -> list[Level]:
        """The best ``n`` asks (all when None), lowest first; ``[]`` while not synced."""
        with self._lock:
            return self._sync.levels.asks.top(n) if self._sync.synced else []

    def view(self, n: int | None = None) -> BookView:
        """Both sides (``n`` levels each, all when None) and the update id, at one instant."""
        with self._lock:
            sync = self._sync
            if not sync.synced:
                return BookView(False, None, [], [])
            return BookView(
                True, sync.last_update_id, sync.levels.bids.top(n), sync.levels.asks.top(n)
            )

    def stats(self) -> BookStats:
        with self._lock:
            sync = self._sync
            last_change = self._last_change
            return BookStats(
                symbol=self.symbol,
                synced=sync.synced,
                resyncs=max(0, sync.syncs - 1),
                snapshot_requests=self._fetcher.requests,
                last_update_id=sync.last_update_id,
                levels=(len(sync.levels.bids), len(sync.levels.asks)),
                seconds_since_update=(
                    None if last_change is None else time.monotonic() - last_change
                ),
                callback_errors=self._errors.count,
            )

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Wait until the book is synced; False after ``timeout`` seconds, or at once if the
        book is closed or can never sync (see :attr:`error`)."""
        with self._changed:
            self._changed.wait_for(lambda: self._sync.synced or self._finished(), timeout)
            return self._sync.synced

    def on_update(self, callback: UpdateCallback) -> Callable[[], None]:
        """Call ``callback(book)`` after each applied event, after each sync and when the book
        loses sync; returns an idempotent ``unsubscribe()``."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        entry = _Entry(callback)
        with self._lock:
            self._callbacks = (*self._callbacks, entry)

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = tuple(c for c in self._callbacks if c is not entry)

        return unsubscribe

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Unsubscribe the stream and end the worker (a snapshot request in flight is cut
        short). Idempotent; safe from callbacks."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._sync.reset()
            worker = self._worker
            self._callbacks = ()
            self._changed.notify_all()
        self._stop.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        self._client.close()

    def _repr_html_(self) -> str:
        from ..notebook import book_html

        return book_html(self)

    def __repr__(self) -> str:
        stats = self.stats()
        state = "synced" if stats.synced else "closed" if self._closed else "not synced"
        return (
            f"<OrderBook {self.symbol} {state} last_update_id={stats.last_update_id} "
            f"levels={stats.levels[0]}/{stats.levels[1]} resyncs={stats.resyncs}>"
        )

    # -- the stream's thread ---------------------------------------------------------------------

    def _on_event(self, event: Any) -> None:
        with self._lock:
            if self._closed or self._ended:
                return
            was_synced = self._sync.synced
            outcome = self._sync.on_event(event)
            unreached = False
            if outcome is EventOutcome.APPLIED:  # the common case, kept short
                if self._reach.armed:
                    self._reach.disarm()
                self._last_change = time.monotonic()
                notify = self._request_notify(True)
            else:
                if outcome is EventOutcome.IGNORED and self._reach.armed and was_synced:
                    unreached = self._retake_if_unreached(event)
                lost = was_synced and not self._sync.synced
                if lost:
                    self._reach.disarm()
                    self._changed.notify_all()
                self._start_worker_if_needed()
                notify = self._request_notify(lost)
        if unreached:
            log.warning("%s: %s: retaking the snapshot", self.symbol, self._reach.describe())
        if outcome is EventOutcome.GAP:
            log.info("%s: gap before update %s: resyncing", self.symbol, event.get("U"))
        elif outcome is EventOutcome.INVALID:
            log.warning("%s: malformed depth event (resyncing): %.200r", self.symbol, event)
        if notify:
            self._run_callbacks()

    def _retake_if_unreached(self, event: Any) -> bool:
        """Under the lock, ``event`` ignored as old by the synced book: if its snapshot is
        overdue (see :mod:`.reach`), drop the sync and buffer ``event`` for the next one."""
        if not self._reach.overdue(event["u"], time.monotonic()):
            return False
        self._sync.reset()
        self._sync.on_event(event)  # buffered: the new snapshot is checked against it
        return True

    def _on_stream_error(self, error: Exception) -> None:
        self._give_up(error, f"{self.stream} failed for good")

    def _on_stream_complete(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._sync.reset()
            self._ended = True
            self._changed.notify_all()
            notify = self._request_notify(True)
        self._stop.set()
        if notify:
            self._run_callbacks()

    def _give_up(self, error: Exception, what: str) -> None:
        with self._lock:
            if self._finished():
                return
            self._error = error
            self._sync.reset()
            self._changed.notify_all()
            notify = self._request_notify(True)
        log.error("%s: %s: %s", self.symbol, what, error)
        self._stop.set()
        if notify:
            self._run_callbacks()
        if self._on_error is not None:
            call_user(
                self._on_error,
                error,
                where=f"order book {self.symbol}",
                what="on_error",
                logger=log,
                counter=self._errors,
            )

    def _finished(self) -> bool:
        """Under the lock: the book will never sync again."""
        return self._closed or self._ended or self._error is not None

    # -- the worker ------------------------------------------------------------------------------

    def _start_worker_if_needed(self) -> None:
        """Under the lock: a snapshot is due and nobody is taking it -> start a worker."""
        if self._worker_running or not self._sync.needs_snapshot or self._finished():
            return
        previous = self._worker
        if previous is not None:
            previous.join()  # it has left the lock for good: ends at once
        self._worker_running = True
        self._worker = threading.Thread(
            target=self._take_snapshots, name=f"wsmanager-book-{self.symbol}", daemon=True
        )
        self._worker.start()

    def _take_snapshots(self) -> None:
        """Take snapshots until the book is synced (or closed). Ends by clearing
        ``_worker_running`` under the lock, as its very last action."""
        while True:
            with self._lock:
                if self._finished() or not self._sync.needs_snapshot:
                    self._worker_running = False
                    return
            try:
                snapshot = self._fetcher.fetch(self._stop)
            except RestRejectedError as exc:
                self._give_up(exc, "the exchange refused the depth snapshot")
                snapshot = None
            except BaseException as exc:  # a bug: never leave the book waiting silently
                where = f"order book {self.symbol}"
                user_code_raised(exc, where, "the snapshot worker", logger=log)
                error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                self._give_up(error, "snapshot worker failed")
                snapshot = None
            if snapshot is None:
                with self._lock:
                    self._worker_running = False
                    return
            with self._lock:
                if self._finished():
                    outcome = SnapshotOutcome.UNNEEDED
                else:
                    outcome = self._sync.on_snapshot(snapshot)
                if outcome is SnapshotOutcome.SYNCED:
                    self._last_change = time.monotonic()
                    book_id = self._sync.last_update_id
                    assert book_id is not None
                    self._reach.synced(snapshot.last_update_id, book_id, self._last_change)
                    self._changed.notify_all()
                notify = self._request_notify(outcome is SnapshotOutcome.SYNCED)
            if outcome is SnapshotOutcome.SYNCED:
                log.info(
                    "%s: synced at update %s (sync %d)",
                    self.symbol,
                    self._sync.last_update_id,
                    self._sync.syncs,
                )
            elif outcome is not SnapshotOutcome.UNNEEDED:
                log.info("%s: snapshot %s: taking another", self.symbol, outcome.value)
            if notify:
                self._run_callbacks()

    # -- callbacks -------------------------------------------------------------------------------

    def _request_notify(self, changed: bool) -> bool:
        """Under the lock: note a change; True if the caller must run the callbacks now."""
        if not changed or not self._callbacks:
            return False
        self._notify_pending = True
        if self._notifying:
            return False  # the thread running them now runs them once more
        self._notifying = True
        return True

    def _run_callbacks(self) -> None:
        """Run the callbacks until no change is pending; never under the lock."""
        try:
            while True:
                with self._lock:
                    if not self._notify_pending:
                        self._notifying = False
                        return
                    self._notify_pending = False
                    callbacks = self._callbacks
                for entry in callbacks:
                    call_user(
                        entry.callback,
                        self,
                        where=f"order book {self.symbol}",
                        what="an on_update callback",
                        logger=log,
                        counter=self._errors,
                    )
        except BaseException:
            with self._lock:
                self._notifying = False
            raise


@dataclass(frozen=True, eq=False)
class _Entry:
    callback: UpdateCallback
