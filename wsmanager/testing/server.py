"""The exchange's server side, on its loop thread: handshakes, connections, control requests,
broadcasting, rules and faults. :class:`~wsmanager.testing.FakeExchange` is its thread-safe front.
"""

from __future__ import annotations

import asyncio
import http
import itertools
import logging
import time
from collections.abc import Awaitable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame
from websockets.http11 import Request, Response
from websockets.protocol import State

from .broadcast import Broadcaster
from .connection import WEBSOCKETS_MAX_LINE, Client, HookedConnection, text_frame
from .control import (
    ControlError,
    ControlRequest,
    Route,
    error_answer,
    parse_request,
    result_answer,
    route,
    stream_name_error,
)
from .futures import route_of, routed_path
from .ledger import ControlEntry, Ledger
from .listenkeys import ListenKeys
from .market import Market, dumps
from .rest import RestApi, json_response
from .rules import AttemptGate, ExchangeRules, SlidingWindow, Violation
from .surface import TimeUnitError, time_unit
from .wsapi import WS_API_PATH, WsApi

__all__ = ["ExchangeServer", "Handshake"]

logger = logging.getLogger("wsmanager.testing")


@dataclass
class Handshake:
    mode: str = "accept"  # accept | reject | accept_then_close | hang
    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: str = ""
    close_code: int = 1000


def _path(target: str) -> str:
    return target.split("?", 1)[0]


def _loggable(message: str | bytes) -> Any:
    try:
        return parse_request(message)[0]
    except ControlError:
        return message


class ExchangeServer:
    """Loop-thread state and behaviour (every method runs on the server's event loop)."""

    def __init__(
        self,
        host: str,
        port: int,
        ssl_context: Any,
        rules: ExchangeRules | None,
        ledger: Ledger,
        market: Market,
        rate: float,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.rules = rules or ExchangeRules()
        self.ledger = ledger
        self.market = market
        gate = self.rules.connection_attempts
        self.gate = AttemptGate(gate[0], gate[1], self.rules.ban_seconds) if gate else None
        self.server: Server | None = None
        self.rest = RestApi(market, ledger, self.rules, self.violate)
        self.streams = Broadcaster(market, ledger, rate)
        self.handshakes: dict[str | None, Handshake] = {}
        self.hang_release: asyncio.Event | None = None
        self.refused: dict[str, tuple[int, str]] = {}
        self.control_delay = 0.0
        self.answer_control = True
        self.hook_failures = 0
        # SBE: the handshake must carry an X-MBX-APIKEY (any non-empty key, or one of api_keys)
        self.require_api_key = market.encoding == "sbe"
        self.api_keys: frozenset[str] | None = None
        self.ids = itertools.count(1)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.connection_class = type("ExchangeConnection", (HookedConnection,), {"listener": self})
        self.wsapi: WsApi | None = None  # the WebSocket API, when the exchange serves it
        self.listen_keys: ListenKeys | None = None  # futures user data, with the WebSocket API

    # -- lifecycle -----------------------------------------------------------------------------

    async def start_listening(self) -> None:
        if self.server is not None:
            return
        self.server = await serve(
            self.handle,
            self.host,
            self.port,
            process_request=self.process_request,
            create_connection=self.connection_class,
            compression=None,
            ping_interval=None,
            open_timeout=None,
            max_size=None,
            close_timeout=1,
            ssl=self.ssl_context,
        )
        self.port = self.server.sockets[0].getsockname()[1]
        if self.listen_keys is not None:
            await self.listen_keys.serve_http(self.host, self.listen_keys.port)

    async def stop_listening(self) -> None:
        server, self.server = self.server, None
        if server is None:
            return
        server.close(close_connections=False)
        if self.listen_keys is not None:
            await self.listen_keys.stop_http()
        for client in self.streams.targets(None):
            client.ws.transport.abort()
        for connection in list(server.all_connections):  # in the handshake too (a client that
            connection.transport.abort()  # went silent there would hold wait_closed for ever)
        self.release_hung()
        await server.wait_closed()

    async def shutdown(self) -> None:
        await self.stop_listening()
        ticker = self.streams.ticker
        tasks = [*self.tasks, *([ticker] if ticker else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def violate(self, kind: str, detail: str, connection_id: int | None = None) -> None:
        self.ledger.violation(Violation(kind, detail, time.monotonic(), connection_id))

    # -- the hook (FrameListener) ----------------------------------------------------------------

    def client_frame(self, ws: HookedConnection, frame: Frame) -> None:
        client = ws.client
        if client is None:
            return
        now = time.monotonic()
        if client.registered:
            self.ledger.client_message(client.id, now)
        else:
            client.early_frames.append(now)
        limit = self.rules.max_client_messages_per_second
        if client.window is None or limit is None:
            return
        count = client.window.add(now)
        if count > limit:
            self.violate(
                "client_messages", f"{count} client messages within 1 s (limit {limit})", client.id
            )
            if self.rules.enforce:
                self.close_client(client, 1008, "Too many messages")

    def request_line(self, ws: HookedConnection, length: int) -> bool:
        """The request line is ``length`` bytes: True when the server refused it (414)."""
        limit = self.rules.max_request_line
        over_rule = limit is not None and length > limit
        if over_rule:
            self.violate("request_line", f"request line of {length} bytes (limit {limit})")
        if length <= WEBSOCKETS_MAX_LINE and not (over_rule and self.rules.enforce):
            return False
        self.ledger.attempt(())
        body = dumps({"code": -1100, "msg": f"Request line too long: {length} bytes."}).encode()
        ws.transport.write(
            b"HTTP/1.1 414 URI Too Long\r\nConnection: close\r\nContent-Type: application/json"
            b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        ws.discard_input()
        return True

    # -- handshakes ------------------------------------------------------------------------------

    def _handshake_for(self, streams: Iterable[str]) -> Handshake:
        for stream in streams:
            if stream in self.handshakes:
                return self.handshakes[stream]
        return self.handshakes.get(None) or Handshake()

    def release_hung(self) -> None:
        if self.hang_release is not None:
            self.hang_release.set()
            self.hang_release = None

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        ws = cast(HookedConnection, connection)
        is_upgrade = "websocket" in request.headers.get("Upgrade", "").lower()
        if not is_upgrade and request.path.startswith(("/api/", "/fapi/", "/dapi/")):
            return await self.rest.answer(ws, request)
        listen_key = self.listen_keys.key_of(request.path) if self.listen_keys else None
        if listen_key is not None and self.listen_keys is not None:
            self.ledger.attempt(())
            if not self.listen_keys.valid(listen_key):
                return json_response(400, {"code": -1125, "msg": "This listenKey does not exist."})
            self._new_client(ws, request.path, Route((), False))
            return None
        routed_to, found = self._route(request.path)
        if found is None and self.wsapi is not None and _path(request.path) == WS_API_PATH:
            found = Route((), False)
        streams = found.streams if found else ()
        self.ledger.attempt(streams)
        refusal = self._gate(ws)
        if refusal is not None:
            return refusal
        if found is None:
            return json_response(http.HTTPStatus.NOT_FOUND, "unknown path\n")
        if self.require_api_key and not self._key_accepted(request):
            msg = "Invalid API-key, IP, or permissions for action."
            return json_response(http.HTTPStatus.UNAUTHORIZED, {"code": -2015, "msg": msg})
        for stream in streams:
            error = stream_name_error(stream)
            refused = self.refused.get(stream)
            if error or refused:
                msg = f"Invalid request: {error}" if error else refused[1]  # type: ignore[index]
                return json_response(400, {"code": -1100, "msg": msg})
        limit = self.rules.max_streams_per_connection
        if limit is not None and len(streams) > limit:
            detail = f"{len(streams)} streams in the URL (limit {limit})"
            self.violate("streams_per_connection", detail)
            if self.rules.enforce:
                msg = f"Too many parameters; expected '{limit}' and received '{len(streams)}'."
                return json_response(400, {"code": -1101, "msg": msg})
        try:
            micro = time_unit(request.path)
        except TimeUnitError as exc:
            return json_response(400, {"code": -1100, "msg": str(exc)})
        handshake = self._handshake_for(streams)
        if handshake.mode == "hang":
            if self.hang_release is None:
                self.hang_release = asyncio.Event()
            await self.hang_release.wait()
            ws.transport.abort()
            return None
        if handshake.mode == "reject":
            return json_response(handshake.status, handshake.body, handshake.headers)
        self._new_client(ws, request.path, found)
        assert ws.client is not None
        ws.client.micro = micro
        if self.market.kind == "usdm":  # routed: the root and the wrong route send nothing
            ws.client.routed, ws.client.route, ws.client.route_of = True, routed_to, route_of
        return None

    def _key_accepted(self, request: Request) -> bool:
        key = request.headers.get("X-MBX-APIKEY", "")
        return bool(key) and (self.api_keys is None or key in self.api_keys)

    def _route(self, path: str) -> tuple[str | None, Route | None]:
        """``(USD-M route, what the path opens)``; the route is None on spot, COIN-M, the root."""
        if self.market.kind == "usdm":
            return routed_path(path)
        return None, route(path)

    def _gate(self, ws: HookedConnection) -> Response | None:
        if self.gate is None:
            return None
        address = ws.remote_address
        ip = str(address[0]) if address else "?"
        answer = self.gate.attempt(ip, time.monotonic(), self.rules.enforce)
        if answer.detail:
            self.violate("banned" if answer.status == 418 else "connection_attempts", answer.detail)
        if not answer.status:
            return None
        if answer.status == 418:
            msg = f"Way too many connection attempts; IP banned for {answer.retry_after} s."
        else:
            msg = f"Too many connection attempts; retry after {answer.retry_after} s."
        return json_response(
            answer.status, {"code": -1003, "msg": msg}, [("Retry-After", str(answer.retry_after))]
        )

    def _new_client(self, ws: HookedConnection, path: str, found: Route) -> None:
        address = ws.remote_address
        window = None
        if self.rules.max_client_messages_per_second is not None:
            window = SlidingWindow(1.0)
        ws.client = Client(
            next(self.ids),
            ws,
            path,
            str(address[0]) if address else "?",
            dict.fromkeys(found.streams),
            found.combined,
            window,
        )

    # -- connections -----------------------------------------------------------------------------

    async def handle(self, connection: ServerConnection) -> None:
        ws = cast(HookedConnection, connection)
        client = ws.client
        assert client is not None
        self.streams.opened(client)
        if self.wsapi is not None and _path(client.path) == WS_API_PATH:
            self.wsapi.opened(client)
        key = self.listen_keys.key_of(client.path) if self.listen_keys else None
        if key is not None and self.listen_keys is not None:
            self.listen_keys.opened(client, key)
        client.registered = True
        for at in client.early_frames:
            self.ledger.client_message(client.id, at)
        handshake = self._handshake_for(client.streams)
        try:
            if handshake.mode == "accept_then_close":
                await ws.close(handshake.close_code)
                return
            self._start_rules(client)
            async for message in ws:
                client.received += 1
                if ws.data_frames < client.received:
                    self._hook_broken()
                self.on_message(client, message)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        finally:
            client.closing = True
            for handle in client.handles:
                handle.cancel()
            for task in client.tasks:
                task.cancel()
            if self.wsapi is not None:
                self.wsapi.closed(client)
            if self.listen_keys is not None:
                self.listen_keys.closed(client)
            received = ws.protocol.close_rcvd
            self.streams.closed(client, received.code if received is not None else None)

    def _hook_broken(self) -> None:
        self.hook_failures += 1
        logger.error(
            "fake exchange: the python-websockets frame hook was not called for a client "
            "message; client message counts and rate rules are wrong"
        )

    def _start_rules(self, client: Client) -> None:
        rules = self.rules
        if rules.max_connection_age is not None and rules.enforce:
            client.handles.append(
                asyncio.get_running_loop().call_later(
                    rules.max_connection_age, self.close_client, client, 1001, "Connection age"
                )
            )
        if rules.server_ping_interval is not None:
            client.tasks.append(asyncio.get_running_loop().create_task(self._pinger(client)))

    async def _pinger(self, client: Client) -> None:
        interval = self.rules.server_ping_interval
        timeout = self.rules.pong_timeout
        assert interval is not None
        loop = asyncio.get_running_loop()
        for number in itertools.count(1):
            await asyncio.sleep(interval)
            if client.stalled:
                continue
            try:
                waiter = await client.ws.ping(str(number).encode())
            except ConnectionClosed:
                return
            if timeout is not None:
                client.handles.append(loop.call_later(timeout, self._pong_due, client, waiter))

    def _pong_due(self, client: Client, waiter: Awaitable[float]) -> None:
        answered = isinstance(waiter, asyncio.Future) and waiter.done()
        if answered or client.closing or client.stalled:
            return
        self.violate("pong_timeout", f"no pong within {self.rules.pong_timeout:g} s", client.id)
        if self.rules.enforce:
            self.close_client(client, 1008, "Pong timeout")

    def close_client(self, client: Client, code: int, reason: str) -> None:
        if client.closing or client.ws.protocol.state is not State.OPEN:
            return
        client.closing = True
        self.spawn(client.ws.close(code, reason))

    # -- control requests ------------------------------------------------------------------------

    def on_message(self, client: Client, message: str | bytes) -> None:
        if self.wsapi is not None and client.id in self.wsapi.sessions:
            self.wsapi.on_message(client, message)
            return
        try:
            document, request = parse_request(message)
        except ControlError as exc:
            answer = error_answer(exc.code, exc.msg, exc.request_id)
            self._answer(client, _loggable(message), answer)
            return
        try:
            answer = result_answer(self._apply(client, request), request.id)
        except ControlError as exc:
            answer = error_answer(exc.code, exc.msg, request.id)
        self._answer(client, document, answer)

    def _answer(self, client: Client, request: Any, answer: dict[str, Any]) -> None:
        if not self.answer_control:
            self.ledger.control(ControlEntry(client.id, request, None))
            return
        self.ledger.control(ControlEntry(client.id, request, answer))
        data = text_frame(dumps(answer).encode())
        if self.control_delay > 0:
            client.handles.append(
                asyncio.get_running_loop().call_later(self.control_delay, client.write, data)
            )
        else:
            client.write(data)

    def _apply(self, client: Client, request: ControlRequest) -> Any:
        if request.method == "LIST_SUBSCRIPTIONS":
            return list(client.streams)
        if request.method == "GET_PROPERTY":
            return client.combined
        if request.method == "SET_PROPERTY":
            client.combined = request.params[1]
            return None
        names = list(dict.fromkeys(request.params))
        for name in names:
            error = stream_name_error(name)
            if error:
                raise ControlError(2, f"Invalid request: {error}")
            if request.method == "SUBSCRIBE" and name in self.refused:
                raise ControlError(*self.refused[name])
        if request.method == "UNSUBSCRIBE":
            self.streams.uncarry(client, [n for n in names if n in client.streams])
            return None
        new = [n for n in names if n not in client.streams]
        limit = self.rules.max_streams_per_connection
        if limit is not None and len(client.streams) + len(new) > limit:
            total = len(client.streams) + len(new)
            self.violate("streams_per_connection", f"{total} streams (limit {limit})", client.id)
            if self.rules.enforce:
                raise ControlError(
                    2, f"Invalid request: too many streams; a connection carries at most {limit}"
                )
        self.streams.carry(client, new)
        return None

    def server_shutdown(self, enveloped: bool, close_after: float | None) -> int:
        targets = self.streams.server_shutdown(enveloped)
        if close_after is not None:
            loop = asyncio.get_running_loop()
            for client in targets:
                client.handles.append(
                    loop.call_later(close_after, self.close_client, client, 1001, "Server shutdown")
                )
        return len(targets)
