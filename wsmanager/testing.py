"""A fake Binance-style exchange for tests and demos: a real WebSocket server on loopback.

Needs the ``websockets`` package (``pip install wsmanager[testing]``)::

    with FakeExchange() as exchange:
        manager = WSManager(url=exchange.url)
        manager.subscribe("btcusdt@trade", print)
        exchange.wait_for_open("btcusdt@trade", 1)
        exchange.publish("btcusdt@trade")            # a Binance-shaped trade
        exchange.drop("btcusdt@trade")                # fault: abrupt disconnect

It serves ``/ws/<stream>``. Fault controls act on live connections (``drop``, ``stall``) or on
the handshakes that follow (``reject``, ``accept_then_close``, ``hang_handshakes``,
``accept_normally``); ``stop_listening``/``start_listening`` restart on the same port.
Every thread it starts ends on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import http
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .payloads import make_payload

__all__ = ["FakeExchange", "StreamStats"]

T = TypeVar("T")
_PREFIX = "/ws/"


@dataclass(frozen=True)
class StreamStats:
    """What the exchange saw of one stream."""

    attempts: int = 0  # handshake requests received
    accepted: int = 0  # connections opened
    open: int = 0  # connections open now
    sent: int = 0  # messages sent


@dataclass
class _Handshake:
    mode: str = "accept"  # accept | reject | accept_then_close | hang
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    close_code: int = 1000


class FakeExchange:
    """A WebSocket server on ``host`` (default 127.0.0.1), port 0 = any free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        rate: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self._ssl_context = ssl_context
        self._requested_port = port
        self.port = 0
        self._rate = rate
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="wsmanager-fake-exchange", daemon=True
        )
        self._server: Server | None = None
        # Loop-thread state.
        self._connections: dict[str, set[ServerConnection]] = {}
        self._stalled: set[ServerConnection] = set()
        self._handshakes: dict[str | None, _Handshake] = {}
        self._hang_release: asyncio.Event | None = None
        self._publishers: dict[str, asyncio.Task[None]] = {}
        self._sequence = 0
        # Counters, read from other threads.
        self._stats_changed = threading.Condition(threading.RLock())  # guards _stats
        self._stats: dict[str, StreamStats] = {}
        self._attempt_times: dict[str, list[float]] = {}
        self._close_codes: dict[str, list[int | None]] = {}
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> FakeExchange:
        if self._started:
            return self
        self._started = True
        self._thread.start()
        self._call(self._start_listening)
        return self

    def close(self) -> None:
        """Stop serving, close every connection, and end the server thread."""
        if not self._started or not self._thread.is_alive():
            return
        self._call(self._shutdown)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """The base URL to give ``WSManager(url=...)``."""
        scheme = "wss" if self._ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}{_PREFIX}"

    def stream_url(self, stream: str) -> str:
        return self.url + stream

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, stream: str, payload: Any = None) -> int:
        """Send ``payload`` (default: a generated Binance-shaped one) as JSON to every open
        connection of ``stream``; return how many connections it went to."""
        return self._call(lambda: self._broadcast(stream, payload, raw=None))

    def send_raw(self, stream: str, data: str | bytes | list[str]) -> int:
        """Send ``data`` as is: ``str`` as a text frame, ``bytes`` as a binary frame, a list of
        ``str`` as one text message fragmented into those frames."""
        return self._call(lambda: self._broadcast(stream, None, raw=data))

    def set_rate(self, rate: float) -> None:
        """Publish generated messages to every open stream ``rate`` times a second (0: off)."""

        async def apply() -> None:
            self._rate = rate
            for stream in list(self._connections):
                self._ensure_publisher(stream)

        self._call(apply)

    # -- faults on live connections ------------------------------------------------------------

    def drop(self, stream: str | None = None, *, code: int | None = None, reason: str = "") -> int:
        """Disconnect ``stream``'s connections (all streams when None): abruptly, without a close
        frame, when ``code`` is None; else with a close frame ``code`` (e.g. 1001)."""

        async def run() -> int:
            targets = self._targets(stream)
            for connection in targets:
                if code is None:
                    connection.transport.abort()
                else:
                    await connection.close(code, reason)
            return len(targets)

        return self._call(run)

    def stall(self, stream: str | None = None) -> int:
        """Make ``stream``'s connections half-open: no data, no pongs, no FIN, until closed."""

        async def run() -> int:
            targets = self._targets(stream)
            for connection in targets:
                self._stalled.add(connection)
                connection.transport.pause_reading()
            return len(targets)

        return self._call(run)

    # -- faults on the next handshakes -----------------------------------------------------------

    def reject(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: str = "",
        *,
        stream: str | None = None,
    ) -> None:
        """Answer the next handshakes (of ``stream``, or all) with HTTP ``status``."""
        self._set_handshake(
            stream, _Handshake("reject", status, tuple((headers or {}).items()), body)
        )

    def accept_then_close(self, code: int = 1000, *, stream: str | None = None) -> None:
        """Complete the next handshakes, then close at once with ``code``."""
        self._set_handshake(stream, _Handshake("accept_then_close", close_code=code))

    def hang_handshakes(self, *, stream: str | None = None) -> None:
        """Accept TCP, then never answer the handshake."""
        self._set_handshake(stream, _Handshake("hang"))

    def accept_normally(self, *, stream: str | None = None) -> None:
        """Undo ``reject``/``accept_then_close``/``hang_handshakes`` (for ``stream``, or all)."""

        async def run() -> None:
            if stream is None:
                self._handshakes.clear()
            else:
                self._handshakes.pop(stream, None)
            if self._hang_release is not None:
                self._hang_release.set()
                self._hang_release = None

        self._call(run)

    def stop_listening(self) -> None:
        """Close the listening socket and abort every connection (a crashed exchange)."""
        self._call(self._stop_listening)

    def start_listening(self) -> None:
        """Listen again, on the same port."""
        self._call(self._start_listening)

    # -- counters ------------------------------------------------------------------------------

    def stats(self, stream: str) -> StreamStats:
        with self._stats_changed:
            return self._stats.get(stream, StreamStats())

    def attempt_times(self, stream: str) -> list[float]:
        """``time.monotonic()`` of each handshake request of ``stream``."""
        with self._stats_changed:
            return list(self._attempt_times.get(stream, ()))

    def close_codes(self, stream: str) -> list[int | None]:
        """The close code each ended connection of ``stream`` received from the client
        (None: no close frame, e.g. the TCP connection just ended)."""
        with self._stats_changed:
            return list(self._close_codes.get(stream, ()))

    def total_attempts(self) -> int:
        with self._stats_changed:
            return sum(s.attempts for s in self._stats.values())

    def open_connections(self) -> int:
        with self._stats_changed:
            return sum(s.open for s in self._stats.values())

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` (re-checked whenever a counter changes) or the timeout."""
        deadline = time.monotonic() + timeout
        with self._stats_changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._stats_changed.wait(remaining)
        return True

    def wait_for_open(self, stream: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``stream`` has ``count`` open connections."""
        return self.wait_until(lambda: self._stats_of(stream).open == count, timeout)

    def wait_for_attempts(self, stream: str, count: int, timeout: float = 5.0) -> bool:
        return self.wait_until(lambda: self._stats_of(stream).attempts >= count, timeout)

    def _stats_of(self, stream: str) -> StreamStats:
        return self._stats.get(stream, StreamStats())  # caller holds _stats_changed

    def _count(self, stream: str, **deltas: int) -> None:
        with self._stats_changed:
            current = self._stats.get(stream, StreamStats())
            self._stats[stream] = StreamStats(
                **{k: getattr(current, k) + deltas.get(k, 0) for k in vars(current)}
            )
            self._stats_changed.notify_all()

    # -- loop-thread internals -------------------------------------------------------------------

    def _call(self, function: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        """Run ``function()`` on the server's loop and return its result."""

        async def run() -> T:
            return await function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def _set_handshake(self, stream: str | None, handshake: _Handshake) -> None:
        async def run() -> None:
            self._handshakes[stream] = handshake

        self._call(run)

    def _targets(self, stream: str | None) -> list[ServerConnection]:
        if stream is None:
            return [c for conns in self._connections.values() for c in conns]
        return list(self._connections.get(stream, ()))

    async def _start_listening(self) -> None:
        if self._server is not None:
            return
        self._server = await serve(
            self._handle,
            self.host,
            self.port or self._requested_port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,
            open_timeout=None,
            max_size=None,
            close_timeout=1,
            ssl=self._ssl_context,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        for connection in self._targets(None):
            connection.transport.abort()
        if self._hang_release is not None:
            self._hang_release.set()
            self._hang_release = None
        await server.wait_closed()

    async def _shutdown(self) -> None:
        await self._stop_listening()
        for task in self._publishers.values():
            task.cancel()
        self._publishers.clear()

    def _handshake_for(self, stream: str) -> _Handshake:
        return self._handshakes.get(stream) or self._handshakes.get(None) or _Handshake()

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if not request.path.startswith(_PREFIX) or len(request.path) == len(_PREFIX):
            return connection.respond(http.HTTPStatus.NOT_FOUND, "unknown path\n")
        stream = request.path[len(_PREFIX) :]
        with self._stats_changed:
            self._attempt_times.setdefault(stream, []).append(time.monotonic())
        self._count(stream, attempts=1)
        handshake = self._handshake_for(stream)
        if handshake.mode == "hang":
            if self._hang_release is None:
                self._hang_release = asyncio.Event()
            await self._hang_release.wait()
            connection.transport.abort()
            return None
        if handshake.mode == "reject":
            response = connection.respond(handshake.status, handshake.body)
            response.headers.update(Headers(handshake.headers))
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        stream = connection.request.path[len(_PREFIX) :] if connection.request else ""
        handshake = self._handshake_for(stream)
        self._connections.setdefault(stream, set()).add(connection)
        self._count(stream, accepted=1, open=1)
        try:
            if handshake.mode == "accept_then_close":
                await connection.close(handshake.close_code)
                return
            self._ensure_publisher(stream)
            await connection.wait_closed()
        finally:
            self._connections.get(stream, set()).discard(connection)
            self._stalled.discard(connection)
            with self._stats_changed:
                received = connection.protocol.close_rcvd
                self._close_codes.setdefault(stream, []).append(
                    received.code if received is not None else None
                )
            self._count(stream, open=-1)

    def _ensure_publisher(self, stream: str) -> None:
        if self._rate > 0 and stream not in self._publishers:
            self._publishers[stream] = asyncio.get_running_loop().create_task(
                self._publish_periodically(stream)
            )

    async def _publish_periodically(self, stream: str) -> None:
        try:
            while self._rate > 0 and self._connections.get(stream):
                await self._broadcast(stream, None, raw=None)
                await asyncio.sleep(1 / self._rate)
        finally:
            self._publishers.pop(stream, None)

    async def _broadcast(
        self, stream: str, payload: Any, raw: str | bytes | list[str] | None
    ) -> int:
        targets = [c for c in self._connections.get(stream, ()) if c not in self._stalled]
        if not targets:
            return 0
        if raw is None:
            if payload is None:
                self._sequence += 1
                payload = make_payload(stream, self._sequence)
            raw = json.dumps(payload, separators=(",", ":"))
        sent = 0
        for connection in targets:
            try:
                await connection.send(raw)
                sent += 1
            except ConnectionClosed:
                pass
        self._count(stream, sent=sent)
        return sent
