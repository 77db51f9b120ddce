"""A fake Binance-style exchange for tests and demos: a real WebSocket server on loopback.

Needs the ``websockets`` package (``pip install wsmanager[testing]``)::

    with FakeExchange() as exchange:
        manager = WSManager(url=exchange.url)
        manager.subscribe("btcusdt@trade", print)
        exchange.wait_for_open("btcusdt@trade", 1)
        exchange.publish("btcusdt@trade")            # the stream's next trade (t + 1)
        exchange.drop("btcusdt@trade")                # fault: abrupt disconnect

It serves Binance's paths: ``/ws/<stream>`` (raw payloads), ``/ws`` (raw, streams added with
``SUBSCRIBE``) and ``/stream?streams=a/b`` (each payload as ``{"stream", "data"}``), answers
control requests, numbers every stream with one sequence shared by all its connections, keeps a
true order book per symbol, and answers REST requests on the same port. Fault controls act on
live connections or on the handshakes that follow. ``rules=BINANCE_SPOT_RULES`` enforces the
exchange's limits and records every violation. ``ws_api=True`` also serves the WebSocket API's
user data streams on ``/ws-api/v3`` (:mod:`wsmanager.testing.wsapi`: accounts, signed
subscriptions, events) and futures listenKeys (:mod:`wsmanager.testing.listenkeys`).
``market="usdm"`` (or ``"coinm"``) is a futures exchange
(:mod:`wsmanager.testing.futures`: USD-M's routes, ``pu``-chained depth, ``/fapi/v1`` REST).
Every thread it starts ends on :meth:`close`.

``encoding="sbe"`` models ``stream-sbe.binance.com``: the handshake must carry an API key in
``X-MBX-APIKEY`` (any non-empty key, or one of ``api_keys``; else HTTP 401), control messages
stay JSON, and ``@trade``, ``@bestBidAsk``, ``@depth`` and ``@depth20`` are sent as binary SBE
frames (never enveloped; :mod:`wsmanager.testing.sbe_market`), times in microseconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from websockets.exceptions import ConnectionClosed

from ..recording import MAX_LINE_BYTES, StrPath
from .archive import FakeArchive
from .book import TrueBook
from .connection import Client
from .fault_controls import FaultControls, check_count, check_rate
from .futures import MARKETS
from .ledger import ConnectionInfo, ControlEntry, Ledger, RestRequest, StreamStats
from .listenkeys import ListenKeys
from .market import ENCODINGS, Market, MarketMessage
from .market_controls import MarketControls
from .past import PastSpec
from .replay import Replay
from .rules import ExchangeRules, Violation
from .server import ExchangeServer
from .wsapi import WsApi
from .wsapi_controls import WsApiControls

__all__ = ["FakeExchange"]

T = TypeVar("T")


class FakeExchange(FaultControls, MarketControls, WsApiControls):
    """A WebSocket (and REST) server on ``host`` (default 127.0.0.1), port 0 = any free port.

    ``history=True`` (or a :class:`~wsmanager.testing.PastSpec`) gives the market a past: a
    deterministic history of aggregate trades leading into the live ``@aggTrade`` stream (ids
    contiguous), served by the REST API (``/api/v3/aggTrades``, ``/api/v3/klines``) and by a fake
    public archive (:attr:`archive`, :attr:`archive_url`); ``@kline_<interval>`` streams then
    carry candles made from the same trades."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rate: float = 0.0,
        ssl_context: Any = None,
        rules: ExchangeRules | None = None,
        seed: int | None = None,
        book_levels: int = 50,
        ws_api: bool = False,
        market: str = "spot",
        history: bool | PastSpec = False,
        encoding: str = "json",
        api_keys: Iterable[str] | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, not {encoding!r}")
        if isinstance(api_keys, str):
            raise TypeError("api_keys must be a collection of keys, not one string")
        if market not in MARKETS:
            raise ValueError(f"market must be one of {', '.join(MARKETS)}, not {market!r}")
        if rules is not None and not isinstance(rules, ExchangeRules):
            raise TypeError(f"rules must be an ExchangeRules or None, not {rules!r}")
        if isinstance(book_levels, bool) or not isinstance(book_levels, int) or book_levels < 1:
            raise ValueError(f"book_levels must be an int >= 1, not {book_levels!r}")
        check_rate(rate)
        self.host = host
        self.rules = rules
        self._ssl = ssl_context is not None
        self._ledger = Ledger()
        spec = PastSpec() if history is True else history or None
        if spec is not None and not isinstance(spec, PastSpec):
            raise TypeError(f"history must be a bool or a PastSpec, not {history!r}")
        self._market = Market(seed, book_levels, spec, market, encoding)
        pasts = self._market.pasts
        self.archive = None if pasts is None else FakeArchive(pasts, host)  # history=...
        self._server = ExchangeServer(
            host, port, ssl_context, rules, self._ledger, self._market, rate
        )
        if api_keys is not None:
            self._server.api_keys = frozenset(api_keys)
        # ws_api: also serve the WebSocket API's user data streams (wsapi_controls.py)
        self._wsapi = WsApi(self._ledger) if ws_api else None
        self._server.wsapi = self._wsapi
        self._listen_keys = ListenKeys(self._wsapi.accounts, self._ledger) if self._wsapi else None
        self._server.listen_keys = self._listen_keys
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wsmanager-fake-exchange", daemon=True
        )
        self._started = False
        self._replays: list[Replay] = []  # guarded by _replays_lock
        self._replays_lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeExchange:
        if self._started:
            return self
        self._started = True
        if self.archive is not None:
            self.archive.start()
        self._thread.start()
        self._run(self._server.start_listening)
        self._run_sync(lambda: self._server.streams.set_rate(self._server.streams.rate))
        return self

    def close(self) -> None:
        """Stop serving, close every connection, and end the server thread.

        Raises ``RuntimeError`` if the frame hook into python-websockets stopped working (the
        counts of client messages, and the rules built on them, would be wrong)."""
        if self.archive is not None:
            self.archive.close()
        if not self._started or not self._thread.is_alive():
            return
        with self._replays_lock:
            replays, self._replays = self._replays, []
        for replay in replays:
            replay.stop()
        self._run(self._server.shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        if self._server.hook_failures:
            raise RuntimeError(
                f"fake exchange: the python-websockets frame hook missed "
                f"{self._server.hook_failures} client messages"
            )

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        """The base URL to give ``WSManager(url=...)`` (``.../ws/``)."""
        return f"{self._scheme()}://{self.host}:{self.port}/ws/"

    @property
    def rest_url(self) -> str:
        """The REST API's base URL (``http://127.0.0.1:<port>``, the same port)."""
        return f"{'https' if self._ssl else 'http'}://{self.host}:{self.port}"

    @property
    def archive_url(self) -> str:
        """The fake public archive's base URL (``history=...`` only): ``archive_url=``."""
        if self.archive is None:
            raise RuntimeError("this exchange has no past: FakeExchange(history=True)")
        return self.archive.url

    def stream_url(self, stream: str) -> str:
        return self.url + stream

    def combined_url(self, *streams: str) -> str:
        """``.../stream?streams=a/b`` (``.../stream`` with none)."""
        base = f"{self._scheme()}://{self.host}:{self.port}/stream"
        return base + ("?streams=" + "/".join(streams) if streams else "")

    def _scheme(self) -> str:
        return "wss" if self._ssl else "ws"

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, stream: str, payload: Any = None, *, count: int = 1) -> int:
        """Make ``stream``'s next message (``payload`` None: the next of its sequence; else
        ``payload`` as given) and send it to every connection carrying the stream, raw or
        enveloped; return how many connections it went to. The sequence advances even when no
        connection carries the stream. ``count`` > 1: that many messages back to back, in one
        write per connection (a burst)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")

        def run() -> int:
            texts = [t for _ in range(count) for t in self._market.publish(stream, payload)]
            return self._server.streams.send(stream, texts)

        return self._run_sync(run)

    def replay(
        self,
        path_or_paths: StrPath | Iterable[StrPath],
        speed: float = 1.0,
        *,
        loop: bool = False,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> Replay:
        """Publish a recording (``wsmanager record``; each path with its parts, several merged by
        time) with its timing divided by ``speed`` (``math.inf``: no waiting), each payload as
        recorded to the connections carrying its stream. ``loop``: start again at the end, with
        sequence numbers shifted to continue. A line over ``max_line_bytes`` ends the replay with
        a ``RecordingError`` naming the file and line. Returns the running :class:`Replay`
        (``wait``/``stop``/``progress``); :meth:`close` stops it."""
        if not self._started or not self._thread.is_alive():
            raise RuntimeError("start the exchange (or enter its with block) before replaying")
        replay = Replay(
            path_or_paths,
            self._publish_recorded,
            speed=speed,
            loop=loop,
            max_line_bytes=max_line_bytes,
        )
        with self._replays_lock:
            self._replays = [r for r in self._replays if not r.done]
            self._replays.append(replay)
        return replay

    def _publish_recorded(self, batch: list[tuple[str, str]]) -> int:
        def run() -> int:
            reached = 0
            for stream, text in batch:
                message: MarketMessage = self._market.recorded(stream, text)
                self._market.last[stream] = message  # for repeat()
                reached += self._server.streams.send(stream, [message])
            return reached

        return self._run_sync(run)

    def send_raw(self, stream: str, data: str | bytes | list[str]) -> int:
        """Send ``data`` as is (never enveloped) to ``stream``'s connections: ``str`` as a text
        frame, ``bytes`` as a binary frame, a list of ``str`` as one fragmented text message."""

        async def run() -> int:
            targets = [
                c
                for c in self._server.streams.targets(stream)
                if not c.stalled and stream not in c.silenced
            ]
            sent = 0
            for client in targets:
                if await _send_raw(client, data):
                    sent += 1
            self._ledger.sent({stream: sent})
            return sent

        return self._run(run)

    def set_rate(self, rate: float) -> None:
        """Publish every stream carried by an open connection ``rate`` times a second (0: off)."""
        check_rate(rate)
        self._run_sync(lambda: self._server.streams.set_rate(rate))

    def sequence(self, stream: str) -> int:
        """The last number ``stream``'s sequence made (trade ``t``, aggTrade ``a``, depth
        ``u``, bookTicker ``u``, a counter for other kinds); 0 before the first."""
        return self._run_sync(lambda: self._market.sequence(stream))

    # -- faults on streams -----------------------------------------------------------------------

    def skip(self, stream: str, count: int) -> None:
        """Make ``count`` numbers of ``stream`` that are never sent: its next message comes
        after a gap of exactly ``count`` (depth: update ids; aggTrade: ids that stay in the
        history the REST API serves)."""
        check_count("count", count)
        self._run_sync(lambda: self._market.feed(stream).skip(count))

    def repeat(self, stream: str, times: int = 1) -> int:
        """Send ``stream``'s last message again ``times`` times (duplicates)."""
        check_count("times", times)

        def run() -> int:
            last = self._market.last.get(stream)
            if last is None:
                raise ValueError(f"nothing was published on {stream!r} yet: nothing to repeat")
            return self._server.streams.send(stream, [last] * times)

        return self._run_sync(run)

    def silence(self, stream: str) -> int:
        """Stop sending ``stream`` on every connection carrying it now (its sequence goes on;
        a connection that subscribes it later, or sends UNSUBSCRIBE then SUBSCRIBE, gets it)."""

        def run() -> int:
            targets = self._server.streams.targets(stream)
            for client in targets:
                client.silenced.add(stream)
            return len(targets)

        return self._run_sync(run)

    def unsilence(self, stream: str) -> int:
        def run() -> int:
            targets = [c for c in self._server.streams.targets(stream) if stream in c.silenced]
            for client in targets:
                client.silenced.discard(stream)
            return len(targets)

        return self._run_sync(run)

    def refuse_stream(self, stream: str, code: int = 2, msg: str | None = None) -> None:
        """Answer a SUBSCRIBE naming ``stream`` with error ``code``/``msg`` (the whole request
        is refused) and a URL naming it with HTTP 400."""
        text = msg if msg is not None else f"Invalid request: stream `{stream}` is not available"
        self._run_sync(lambda: self._server.refused.__setitem__(stream, (code, text)))

    def accept_stream(self, stream: str) -> None:
        self._run_sync(lambda: self._server.refused.pop(stream, None))

    def control_delay(self, seconds: float) -> None:
        """Answer control requests ``seconds`` late (they take effect at once)."""
        check_rate(seconds, "seconds")
        self._run_sync(lambda: setattr(self._server, "control_delay", seconds))

    def answer_control(self, answer: bool) -> None:
        """False: control requests still take effect but are never answered."""
        self._run_sync(lambda: setattr(self._server, "answer_control", bool(answer)))

    def server_shutdown(self, *, enveloped: bool = False, close_after: float | None = None) -> int:
        """Send ``{"e": "serverShutdown", "E": <ms>}`` on every open connection (bare, or as the
        ``data`` of an envelope naming one of its streams); ``close_after`` seconds later,
        close those connections with 1001. Return how many got it."""
        if close_after is not None:
            check_rate(close_after, "close_after")
        return self._run_sync(lambda: self._server.server_shutdown(enveloped, close_after))

    # -- faults on live connections ------------------------------------------------------------

    def drop(self, stream: str | None = None, *, code: int | None = None, reason: str = "") -> int:
        """Disconnect the connections carrying ``stream`` (all when None): abruptly, without a
        close frame, when ``code`` is None; else with a close frame ``code`` (e.g. 1001)."""

        async def run() -> int:
            targets = self._server.streams.targets(stream)
            if code is None:
                for client in targets:
                    client.ws.transport.abort()
            else:
                await asyncio.gather(*(c.ws.close(code, reason) for c in targets))
            return len(targets)

        return self._run(run)

    def stall(self, stream: str | None = None) -> int:
        """Make the connections carrying ``stream`` half-open: no data, no pings, no pongs, no
        FIN, until closed."""

        def run() -> int:
            targets = self._server.streams.targets(stream)
            for client in targets:
                client.stalled = True
                client.ws.transport.pause_reading()
            return len(targets)

        return self._run_sync(run)

    # -- what the exchange saw (thread-safe) -----------------------------------------------------

    def stats(self, stream: str) -> StreamStats:
        return self._ledger.stats(stream)

    def attempt_times(self, stream: str | None = None) -> list[float]:
        """``time.monotonic()`` of each handshake request (naming ``stream``, or all)."""
        return self._ledger.attempt_times(stream)

    def close_codes(self, stream: str) -> list[int | None]:
        """The close code each ended connection carrying ``stream`` received from the client
        (None: no close frame, e.g. the TCP connection just ended)."""
        return self._ledger.close_codes(stream)

    def total_attempts(self) -> int:
        """Handshake requests received (REST requests excluded)."""
        return self._ledger.total_attempts()

    def open_connections(self) -> int:
        return self._ledger.open_connections()

    def connections(self, open_only: bool = True) -> list[ConnectionInfo]:
        return self._ledger.connections(open_only)

    def client_message_times(self, connection_id: int) -> list[float]:
        """``time.monotonic()`` of each client frame (text, binary, ping, pong) on a connection."""
        return self._ledger.message_times(connection_id)

    def control_log(self) -> list[ControlEntry]:
        """Every control request in order: ``(connection id, request, answer or None)``."""
        return self._ledger.control_log()

    def violations(self) -> list[Violation]:
        return self._ledger.violations()

    def rest_requests(self) -> list[RestRequest]:
        """Every REST request: ``(at, path, params, status, weight)``."""
        return self._ledger.rest_requests()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (re-checked on every change the exchange records) or the
        timeout; return whether it came true."""
        return self._ledger.wait_until(predicate, timeout)

    def wait_for_open(self, stream: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until exactly ``count`` open connections carry ``stream``."""
        return self.wait_until(lambda: self._ledger.stats(stream).open == count, timeout)

    def wait_for_attempts(self, stream: str, count: int, timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: self._ledger.stats(stream).attempts >= count, timeout)

    def book(self, symbol: str, update_id: int | None = None) -> TrueBook:
        """The true order book of ``symbol`` now (or as it was at ``update_id``), a frozen copy."""
        return self._run_sync(lambda: self._market.book(symbol).snapshot(update_id))

    # -- the loop thread -------------------------------------------------------------------------

    def _run(self, function: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        """Run the coroutine ``function()`` on the server's loop and return its result."""

        async def run() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def _run_sync(self, function: Callable[[], T], timeout: float = 10) -> T:
        """Run ``function()`` on the server's loop and return its result."""

        async def run() -> T:
            return function()

        result: T = asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)
        return result


async def _send_raw(client: Client, data: str | bytes | list[str]) -> bool:
    client.fragmenting += isinstance(data, list)
    try:
        await client.ws.send(data)
        return True
    except ConnectionClosed:
        return False
    finally:
        client.fragmenting -= isinstance(data, list)
