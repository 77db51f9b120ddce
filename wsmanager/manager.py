"""The ``WSManager`` facade: subscriptions, lifecycle, the supervisor thread, introspection."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry

from .backoff import BackoffPolicy, RetryDelayInfo
from .book import BookStats, OrderBook
from .book.backfill import gap_backfill
from .book.rest import AGG_TRADES_PATH
from .book.shelf import BookShelf
from .config import WSManagerConfig, is_loopback_url, redact_url, validate_stream_name
from .core._locks import make_lock
from .core.delivery import (
    Backfill,
    CompleteCallback,
    ErrorCallback,
    GapCallback,
    MessageCallback,
    Subscription,
)
from .core.flow import plain_subscribe
from .core.state import ConnectionState, Gap, Health, StreamInfo, WSManagerMetrics
from .endpoints import Endpoint, apply_endpoint, get_endpoint
from .engine import lifecycle
from .engine.registry import StreamRegistry
from .engine.report import health_reasons
from .engine.routes import router_for, warn_if_decommissioned
from .engine.status import StatusCallback, StatusFeed
from .engine.supervisor import Supervisor
from .errors import InvalidStreamNameError, ManagerClosedError
from .history import api as history_api
from .iterate import StreamIterator, collect
from .metrics import PrometheusExporter
from .net._closing import ClosesOnExit
from .net.transport import tls_context
from .notebook import manager_html
from .sbe.streams import book_speed
from .typed_loading import require_typed, typed_decoder
from .userdata import UserDataStreams

__all__ = ["Unsubscribe", "WSManager"]

log = logging.getLogger("wsmanager")

Unsubscribe = Callable[[], None]

_manager_numbers = itertools.count(1)


class WSManager(ClosesOnExit):
    """Shared, self-healing WebSocket stream subscriptions with a callback API.

    All options are keyword-only except ``url``; their defaults live in
    :class:`~wsmanager.config.WSManagerConfig`. ``endpoint`` names a preset of
    :mod:`wsmanager.endpoints` (or is an ``Endpoint``): its URL and rules become the defaults,
    options you pass win, and ``url`` wins for the address (the preset's rules still apply).
    ``ssl_context`` replaces the default (verifying) TLS context for ``wss://`` URLs.
    ``registry`` is a shared prometheus-client registry to export into as well, with the label
    ``manager=metrics_name`` (default ``manager-<n>``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        endpoint: str | Endpoint | None = None,
        ssl_context: ssl.SSLContext | None = None,
        registry: CollectorRegistry | None = None,
        metrics_name: str | None = None,
        **options: Any,
    ) -> None:
        self.endpoint = None if endpoint is None else get_endpoint(endpoint)
        settings = apply_endpoint(self.endpoint, url, options)
        try:
            self.config = WSManagerConfig(**settings)
        except TypeError as exc:  # an unknown keyword: name it plainly
            raise TypeError(f"WSManager: {exc}".replace("__init__() ", "")) from None
        url = self.config.url
        if self.config.typed:
            require_typed()  # ImportError naming the extra now, not at the first subscribe
        if self.config.debug:
            log.setLevel(logging.DEBUG)
        if self.endpoint is None or not self.endpoint.routed:  # routed: the root is only a base
            warn_if_decommissioned(url)
        self._router = router_for(self.config, self.endpoint)
        ssl_context = tls_context(self.config.verify_tls, ssl_context, self.config.url)
        if urlsplit(url).scheme == "ws" and not is_loopback_url(url):
            log.warning(
                "%s is not encrypted (ws://) and not on this machine; use wss:// in production",
                redact_url(url),
            )
        self._policy = BackoffPolicy(self.config.base_retry_delay, self.config.max_retry_delay)
        self._status = StatusFeed()
        self._gap_listeners: tuple[GapCallback, ...] = ()  # copy-on-write
        self._gap_lock = make_lock("gap-listeners")  # serialises changes of _gap_listeners
        self._books = BookShelf()
        self._seams = history_api.SeamShelf()  # subscribe(..., since=...): history threads
        self._closing = threading.Event()  # set by destroy(): cuts backfill requests short
        self._registry = StreamRegistry(
            self.config,
            self._status_changed,
            lambda: self._gap_listeners,
            ssl_context=ssl_context,
            on_handover=lambda: self._supervisor.wake(),
            backfill_for=self._backfill_for,
            router=self._router,
        )
        self._user_data = UserDataStreams(
            self.config,
            self.endpoint.ws_api_url if self.endpoint is not None else None,
            lambda: self._gap_listeners,
            ssl_context=ssl_context,
            listen_key_path=self.endpoint.listen_key_path if self.endpoint is not None else None,
        )
        self._destroyed = False
        self._forked_away = False
        self.metrics_name = metrics_name or f"manager-{next(_manager_numbers)}"
        self._supervisor = Supervisor(
            self._status,
            next_deadline=self._registry.next_handover_deadline,
            advance=self._registry.advance_handovers,
            sweep=self.force_cleanup_idle_streams,
            interval=self.config.cleanup_interval,
            idle_cleanup=self.config.idle_timeout is not None,
            name=f"manager {self.metrics_name}",
            errors=self._status.errors,
        )
        self._exporter = PrometheusExporter(self, self.metrics_name, registry)
        self._supervisor.start()
        lifecycle.register(self)

    # -- subscriptions ---------------------------------------------------------------------------

    def subscribe(
        self,
        stream: str,
        callback: MessageCallback,
        on_error: ErrorCallback | None = None,
        on_complete: CompleteCallback | None = None,
        *,
        backfill: bool = False,
        since: Any = None,
        time_unit: str | None = None,
        batch: bool = False,
        typed: bool | None = None,
    ) -> Unsubscribe:
        """Call ``callback(message)`` with each decoded JSON message of ``stream``.

        Returns an idempotent ``unsubscribe()`` that is safe from any thread, callbacks included.
        ``backfill=True`` (``@aggTrade`` streams, with ``rest_url`` set) fills a gap from the
        exchange's REST API before the message that revealed it. ``since`` (``@aggTrade`` and
        ``@kline_<interval>``: an aware datetime, epoch ms or a timedelta back from now) first
        delivers the stream's history from then, then live, with no gap and no duplicate at the
        seam (``docs/history.md``); ``time_unit`` (default the manager's ``time_unit`` option,
        else milliseconds) is the unit of their times: ``"millisecond"`` or ``"microsecond"``.
        ``batch=True`` calls ``callback(messages)`` with a non-empty list of every message
        pending at its turn, in order. ``typed`` (default: the manager's ``typed``) delivers
        immutable typed objects for the documented payloads (``docs/typed.md``).
        """
        validate_stream_name(stream)
        refusal = self._router.refusal(stream)
        if refusal is not None:
            raise InvalidStreamNameError(stream, refusal)
        _check_callable("callback", callback)
        _check_callable("on_error", on_error, optional=True)
        _check_callable("on_complete", on_complete, optional=True)
        if self._forked_away:
            raise ManagerClosedError(_FORKED)
        if not isinstance(batch, bool):
            raise TypeError(f"batch must be True or False, not {batch!r}")
        decode = typed_decoder(stream, self.config.typed if typed is None else typed)
        if since is not None or time_unit is not None:
            if batch or decode is not None:
                raise ValueError("since= delivers dicts one by one: not with batch or typed")
            if since is None:
                raise ValueError("time_unit applies to history: give since= as well")
            return history_api.subscribe_since(
                self.config,
                self._seams,
                lambda cb, err, done: self.subscribe(
                    stream, cb, err, done, backfill=backfill, typed=False
                ),
                stream,
                callback,
                on_error,
                on_complete,
                since,
                time_unit,
            )
        subscription = Subscription(
            stream, callback, on_error, on_complete, backfill, batch=batch, decode=decode
        )
        self._registry.subscribe(subscription)
        registry = self._registry

        def unsubscribe() -> None:
            registry.unsubscribe(subscription)

        return unsubscribe

    def user_data(
        self,
        callback: MessageCallback,
        *,
        api_key: str,
        api_secret: str | bytes | None = None,
        private_key: str | bytes | os.PathLike[str] | None = None,
        on_error: ErrorCallback | None = None,
        ws_api_url: str | None = None,
        keepalive_interval: float | None = None,
    ) -> Unsubscribe:
        """Call ``callback(event)`` with each user data event of the account ``api_key``, signed
        with ``api_secret`` (HMAC-SHA256) or ``private_key`` (Ed25519 or RSA: PEM bytes or a
        path), through the WebSocket API at ``ws_api_url`` (default: the endpoint's). Calls with
        the same API key share one subscription. Futures endpoints (``usdm-*``, ``coinm``) use a
        listenKey from ``rest_url``, kept alive every ``keepalive_interval`` seconds (default 30
        minutes), streamed from ``ws_api_url`` (the private route). See docs/user-data.md."""
        if self._destroyed:
            raise ManagerClosedError(_FORKED if self._forked_away else "the manager was destroyed")
        return self._user_data.subscribe(
            callback,
            api_key=api_key,
            api_secret=api_secret,
            private_key=private_key,
            on_error=on_error,
            ws_api_url=ws_api_url,
            keepalive_interval=keepalive_interval,
        )

    def history(
        self,
        stream: str,
        since: Any,
        until: Any = None,
        progress: bool | None = None,
        *,
        time_unit: str | None = None,
    ) -> list[Any]:
        """The messages of ``stream`` (``@aggTrade``, ``@kline_<interval>``) from ``since`` to
        ``until`` (exclusive, default now; klines: the candles closed by then), as the live
        stream sends them, from the public archive and REST; no WebSocket is opened.
        ``progress``: a tqdm bar (None: where a person watches). See ``docs/history.md``."""
        return history_api.history(self.config, stream, since, until, progress, time_unit)

    def history_frame(
        self,
        stream: str,
        since: Any,
        until: Any = None,
        progress: bool | None = None,
        *,
        time_unit: str | None = None,
        exact: bool = False,
    ) -> Any:
        """:meth:`history` as a pandas DataFrame (``wsmanager[notebook]``): typed columns, times
        as UTC timestamps, prices as floats (``exact=True``: the exchange's strings)."""
        return history_api.history_frame(
            self.config, stream, since, until, progress, time_unit, exact
        )

    def iterate(
        self, stream: str, *, timeout: float | None = None, max_buffered: int = 10_000
    ) -> StreamIterator:
        """Subscribe and return a blocking iterator over the messages (a context manager)."""
        return StreamIterator(self, stream, timeout=timeout, max_buffered=max_buffered)

    def collect(self, stream: str, count: int, timeout: float) -> list[Any]:
        """Up to ``count`` messages of ``stream`` within ``timeout`` seconds, as a list."""
        return collect(self, stream, count, timeout)

    def observe(self, stream: str) -> Any:
        """``stream`` as a reactivex ``Observable`` (needs the ``rx`` extra)."""
        try:
            from .rx import observe
        except ImportError as exc:
            raise ImportError(
                "WSManager.observe needs reactivex: pip install 'wsmanager[rx]'"
            ) from exc
        return observe(self, stream)

    def order_book(
        self,
        symbol: str,
        rest_url: str | None = None,
        *,
        limit: int = 1000,
        speed: str | None = None,
        **options: Any,
    ) -> OrderBook:
        """A local order book of ``symbol`` kept in sync with Binance's documented procedure
        (the ``<symbol>@depth@<speed>`` stream plus REST snapshots from ``rest_url``, default the
        manager's ``rest_url``). Its depth stream shares connections like any subscriber's.
        ``speed``: ``"100ms"`` (the default) or ``"1000ms"``; with ``encoding="sbe"`` only
        ``"20ms"`` (``<symbol>@depth``, the default there).
        ``options`` go to :class:`~wsmanager.book.OrderBook`."""
        if self._forked_away or self._destroyed:
            raise ManagerClosedError("the manager was destroyed; create a new WSManager")
        speed = book_speed(self.config.encoding, speed)
        options.setdefault("proxy", self.config.proxy)  # REST goes the way connections go
        if self.endpoint is not None:  # the preset's procedure and REST path (futures: /fapi)
            options.setdefault("market", self.endpoint.market)
            options.setdefault("depth_path", self.endpoint.depth_path)
        book = OrderBook(
            plain_subscribe(self),
            symbol,
            rest_url=rest_url or self.config.effective_rest_url,
            limit=limit,
            speed=speed,
            **options,
        )
        self._books.add(book)
        return book

    def get_book_stats(self) -> list[BookStats]:
        """One :class:`~wsmanager.book.BookStats` per open order book of this manager."""
        return self._books.stats()

    def _backfill_for(self, stream: str) -> Backfill | None:
        """For ``@aggTrade`` streams: fetch a gap's trades from the REST API."""
        path = AGG_TRADES_PATH if self.endpoint is None else self.endpoint.agg_trades_path
        return gap_backfill(
            stream, self.config.effective_rest_url, path, self.config.proxy, self._closing
        )

    # -- status --------------------------------------------------------------------------------

    def get_connection_status(self) -> ConnectionState:
        return self._registry.state()

    def on_connection_status(self, callback: StatusCallback) -> Unsubscribe:
        """Call ``callback(state)`` now with the current state, then on every change."""
        _check_callable("callback", callback)
        listener, moved_on = self._status.add(callback)
        if moved_on:
            self._supervisor.wake()
        status = self._status

        def unsubscribe() -> None:
            status.remove(listener)

        return unsubscribe

    def on_gap(self, callback: Callable[[Gap], object]) -> Unsubscribe:
        """Call ``callback(gap)`` for every jump in a sequenced stream (``wsmanager.Gap``), on
        that stream's callback thread, before the message that revealed it."""
        _check_callable("callback", callback)
        with self._gap_lock:
            self._gap_listeners = (*self._gap_listeners, callback)
        done = False

        def unsubscribe() -> None:
            nonlocal done
            with self._gap_lock:
                if done:
                    return
                done = True
                listeners = list(self._gap_listeners)
                listeners.remove(callback)
                self._gap_listeners = tuple(listeners)

        return unsubscribe

    def _status_changed(self, state: ConnectionState) -> None:
        # Called under the registry lock: record and signal, nothing more.
        if self._status.set(state):
            self._supervisor.wake()

    # -- introspection and cleanup ---------------------------------------------------------------

    def get_active_streams_count(self) -> int:
        return self._registry.active_count()

    def get_stream_info(self) -> list[StreamInfo]:
        return self._registry.infos()

    def force_cleanup_idle_streams(self, idle_timeout: float | None = None) -> int:
        """End every stream idle for ``idle_timeout`` seconds (default: the manager's)."""
        if idle_timeout is None:
            idle_timeout = self.config.idle_timeout
            if idle_timeout is None:
                return 0
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
            raise TypeError(f"idle_timeout must be a number, not {type(idle_timeout).__name__}")
        if idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0, got {idle_timeout}")
        cleaned = self._registry.remove_idle(idle_timeout)
        if cleaned:
            log.info("cleaned up %d idle stream(s)", cleaned)
        return cleaned

    def get_retry_delay_preview(self, attempt: int) -> RetryDelayInfo:
        if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        return self._policy.preview(attempt)

    def get_metrics(self) -> WSManagerMetrics:
        books = self._books.figures()
        user = self._user_data.figures()
        metrics = self._registry.metrics()
        return dataclasses.replace(
            metrics,
            callback_errors=metrics.callback_errors + self._status.errors.count + books.errors,
            user_data_connections=user.connections,
            user_data_accounts=user.accounts,
            user_data_subscriptions=user.live,
            user_data_events=user.events,
            user_data_gaps=user.gaps,
            user_data_rejections=user.rejections,
            order_books=books.books,
            order_books_synced=books.synced,
            order_book_resyncs=books.resyncs,
            order_book_snapshot_requests=books.snapshot_requests,
        )

    def get_prometheus_metrics(self) -> str:
        """This manager's metrics in the Prometheus text format (prometheus-client's)."""
        return self._exporter.exposition()

    def health(self) -> Health:
        """Unhealthy when destroyed, when a stream has had no connection for longer than
        ``max_retry_delay``, or for ``max_retry_delay`` after a stream failed for good."""
        if self._forked_away:
            return Health(False, [_FORKED])
        if self._destroyed:
            return Health(False, ["the manager was destroyed"])
        reasons = health_reasons(
            self.config.max_retry_delay,
            self._registry.disconnected_for(),
            self._registry.recent_failures(self.config.max_retry_delay),
            self._user_data.waiting(),
        )
        return Health(not reasons, reasons)

    @property
    def destroyed(self) -> bool:
        return self._destroyed

    # -- lifecycle -----------------------------------------------------------------------------

    def destroy(self) -> None:
        """Close every connection, tell every subscriber ``on_complete``, stop the sweep, and
        return once the manager's threads have ended (except the calling thread). Idempotent."""
        self._shutdown(join_timeout=None)

    def _shutdown(self, join_timeout: float | None) -> None:
        if self._forked_away:
            return  # the parent's connections: not ours to close
        self._destroyed = True
        self._closing.set()
        self._books.close_all()
        self._seams.close_all()
        # First end the streams (the registry publishes the final "disconnected" status), then
        # stop the supervisor, which delivers that status before it ends.
        closing = self._registry.close()
        self._user_data.close(self.config.close_timeout + 0.5)
        self._supervisor.stop()
        self._exporter.close()
        current = threading.current_thread()
        deadline = None if join_timeout is None else time.monotonic() + join_timeout
        # Connections close with a close frame and a short wait; past that, cut them.
        grace = time.monotonic() + self.config.close_timeout + 0.5
        for connection in closing:
            if connection.thread is not current:
                connection.thread.join(max(0.0, grace - time.monotonic()))
            if connection.thread.is_alive():
                connection.kill()
        threads = [*self._registry.threads(), self._supervisor.thread]
        for thread in threads:
            if thread is current or not thread.is_alive():
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        lifecycle.forget(self)

    def _forget_after_fork(self) -> None:
        """In a forked child: drop the parent's streams without touching their sockets."""
        self._forked_away = True
        self._destroyed = True
        self._supervisor.after_fork()
        self._registry.forget_after_fork()

    def close(self) -> None:
        """The same as :meth:`destroy` (so ``with WSManager(...)`` destroys on exit)."""
        self.destroy()

    def __repr__(self) -> str:
        state = "destroyed" if self._destroyed else self._status.current.value
        streams = self.get_active_streams_count()
        return f"<WSManager {redact_url(self.config.url)} {state}, {streams} stream(s)>"

    def _repr_html_(self) -> str:
        """The manager and its streams as HTML tables, for Jupyter (``notebook.manager_html``)."""
        return manager_html(self)


_FORKED = "this manager belongs to the parent process (os.fork): create a new one in the child"


def _check_callable(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")
