"""The exchange's REST API (plain HTTP GET on the WebSocket port), consistent with its market:
``/api/v3/depth`` from the true book, ``/api/v3/aggTrades`` from the aggregate-trade history
(and, with a past, ``/api/v3/klines``: :mod:`.klines`),
``/api/v3/ping`` and ``/api/v3/time`` (a futures market: the same under ``/fapi/v1`` or
``/dapi/v1``, the depth answer with ``E`` and ``T``, and no ``/api/v3``); Binance's request
weights in ``X-MBX-USED-WEIGHT-1M``,
Binance's error JSON for bad parameters, and REST faults (errors, throttling, slow answers,
snapshots older than the stream). Runs on the server's loop thread.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from .futures import REST_PREFIXES, futures_depth_weight
from .klines import KLINES_LIMIT_MAX, agg_trades_answer, klines_answer
from .ledger import Ledger, RestRequest
from .market import Market, dumps
from .past import INTERVAL_MS
from .rules import AttemptGate, ExchangeRules, SlidingWindow

__all__ = ["DEPTH_LIMIT_MAX", "RestApi", "RestFaults", "depth_weight", "json_response"]

DEPTH_LIMIT_MAX = 5000  # larger limits are truncated to this, as on Binance
AGG_TRADES_LIMIT_MAX = 1000
_SYMBOL = re.compile(r"[A-Z0-9_.-]{1,20}")
_INTEGER = re.compile(r"[0-9]{1,20}")


def json_response(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """An HTTP response: ``body`` as JSON (a ``str`` body: as plain text)."""
    data = (body if isinstance(body, str) else dumps(body)).encode()
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    content_type = "text/plain; charset=utf-8" if isinstance(body, str) else "application/json"
    return Response(
        status,
        phrase,
        Headers(
            [
                ("Date", email.utils.formatdate(usegmt=True)),
                ("Connection", "close"),
                ("Content-Type", content_type),
                ("Content-Length", str(len(data))),
                *headers,
            ]
        ),
        data,
    )


def depth_weight(limit: int) -> int:
    """Binance's weight of ``GET /api/v3/depth`` by ``limit``."""
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


class _BadRequest(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


@dataclass
class RestFaults:
    """REST faults in force (the loop thread only)."""

    error_status: int = 0
    error_count: int | None = 0  # answers left to fail; None: until rest_normal()
    throttle_status: int = 0
    throttle_retry_after: int | str = 0
    throttle_count: int | None = 0
    delay: float = 0.0
    snapshot_lag: int = 0
    snapshot_ahead: int = 0

    @staticmethod
    def _take(count: int | None) -> tuple[bool, int | None]:
        if count is None:
            return True, None
        return (count > 0), max(0, count - 1)


class RestApi:
    """Answers the REST requests that reach the WebSocket port."""

    def __init__(
        self,
        market: Market,
        ledger: Ledger,
        rules: ExchangeRules,
        violate: Callable[[str, str], None],
    ) -> None:
        self.market = market
        self.ledger = ledger
        self.rules = rules
        self.violate = violate
        self.faults = RestFaults()
        self.prefix = REST_PREFIXES[market.kind]  # /api/v3, /fapi/v1 or /dapi/v1
        self._used: dict[str, SlidingWindow] = {}  # ip -> weight in the last minute
        limit = rules.rest_weight_per_minute
        self.gate = None
        if limit is not None:
            self.gate = AttemptGate(limit, 60.0, rules.ban_seconds, "REST request weight")

    async def answer(self, connection: ServerConnection, request: Request) -> Response:
        parts = urlsplit(request.path)
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if self.faults.delay > 0:
            await asyncio.sleep(self.faults.delay)
        address = connection.remote_address
        ip = str(address[0]) if address else "?"
        status, body, weight, headers = self._answer(parts.path, params, ip)
        self.ledger.rest(RestRequest(time.monotonic(), parts.path, params, status, weight))
        return json_response(status, body, headers)

    def _answer(
        self, path: str, params: dict[str, str], ip: str
    ) -> tuple[int, Any, int, list[tuple[str, str]]]:
        faults = self.faults
        throttled, faults.throttle_count = faults._take(faults.throttle_count)
        if throttled and faults.throttle_status:
            headers = [("Retry-After", str(faults.throttle_retry_after))]
            msg = "Too much request weight used; please use WebSocket Streams for live updates."
            return faults.throttle_status, {"code": -1003, "msg": msg}, 0, headers
        failed, faults.error_count = faults._take(faults.error_count)
        if failed and faults.error_status:
            msg = "An unknown error occurred while processing the request."
            return faults.error_status, {"code": -1000, "msg": msg}, 0, []
        try:
            weight, make = self._route(path, params)
        except _BadRequest as exc:
            return exc.status, {"code": exc.code, "msg": exc.msg}, 0, []
        now = time.monotonic()
        if self.gate is not None:
            verdict = self.gate.attempt(ip, now, self.rules.enforce, weight)
            if verdict.detail:
                self.violate("banned" if verdict.status == 418 else "rest_weight", verdict.detail)
            if verdict.status:
                headers = [("Retry-After", str(verdict.retry_after))]
                msg = f"Too much request weight used; retry after {verdict.retry_after} s."
                return verdict.status, {"code": -1003, "msg": msg}, 0, headers
        used = self._used.setdefault(ip, SlidingWindow(60.0)).add(now, weight)
        return 200, make(), weight, [("X-MBX-USED-WEIGHT-1M", str(used))]

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, Callable[[], Any]]:
        prefix, _, name = path.rpartition("/")
        if prefix != self.prefix:
            raise _BadRequest(-1000, f"Unknown path {path}.", status=404)
        if name == "ping":
            return 1, dict
        if name == "time":
            return 1, lambda: {"serverTime": int(time.time() * 1000)}
        if name == "depth":
            symbol = _symbol(params)
            futures = self.market.futures
            limit_max = 1000 if futures else DEPTH_LIMIT_MAX
            limit = min(
                _integer(params, "limit", 100 if not futures else 500, minimum=1), limit_max
            )
            lag, ahead = self.faults.snapshot_lag, self.faults.snapshot_ahead

            def depth() -> Any:
                book = self.market.book(symbol)
                at = book.last_update_id - lag if lag else None
                answer = book.depth_answer(limit, at)
                if ahead:  # hostile: an id the stream will not reach for a long time
                    answer["lastUpdateId"] += ahead
                if futures:  # futures answers also say when (E: event, T: transaction)
                    now = int(time.time() * 1000)
                    answer = {
                        "lastUpdateId": answer["lastUpdateId"],
                        "E": now,
                        "T": now - 1,
                        "bids": answer["bids"],
                        "asks": answer["asks"],
                    }
                return answer

            weight = futures_depth_weight(limit) if futures else depth_weight(limit)
            return weight, depth
        if name == "aggTrades":
            symbol = _symbol(params)
            limit = _integer(params, "limit", 500, minimum=1)
            if limit > AGG_TRADES_LIMIT_MAX:
                raise _BadRequest(-1130, "Data sent for parameter 'limit' is not valid.")
            from_id = _integer(params, "fromId", None, minimum=0)
            start = _integer(params, "startTime", None, minimum=0)
            end = _integer(params, "endTime", None, minimum=0)

            def trades() -> Any:
                history = self.market.agg_trades(symbol)
                if self.market.pasts is not None:
                    past = self.market.pasts.of(symbol)
                    return agg_trades_answer(past, history, from_id, start, end, limit)
                if start is None and end is None:
                    return history.trades_from(from_id, limit)
                found = history.trades_from(from_id, len(history.history))
                return [
                    t
                    for t in found
                    if (start is None or t["T"] >= start) and (end is None or t["T"] <= end)
                ][:limit]

            return 4, trades
        if name == "klines" and self.market.pasts is not None:
            return 2, self._klines(params)
        raise _BadRequest(-1000, f"Unknown path {path}.", status=404)

    def _klines(self, params: dict[str, str]) -> Callable[[], Any]:
        symbol = _symbol(params)
        interval = params.get("interval", "")
        if interval not in INTERVAL_MS:
            raise _BadRequest(-1120, "Invalid interval.")
        limit = _integer(params, "limit", 500, minimum=1)
        if limit > KLINES_LIMIT_MAX:
            raise _BadRequest(-1130, "Data sent for parameter 'limit' is not valid.")
        start = _integer(params, "startTime", None, minimum=0)
        end = _integer(params, "endTime", None, minimum=0)
        pasts = self.market.pasts
        assert pasts is not None

        def klines() -> Any:
            past, feed = pasts.of(symbol), self.market.agg_trades(symbol)
            return klines_answer(past, feed, interval, start, end, limit)

        return klines


def _symbol(params: dict[str, str]) -> str:
    symbol = params.get("symbol", "")
    if not symbol:
        raise _BadRequest(
            -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
        )
    if not _SYMBOL.fullmatch(symbol):
        raise _BadRequest(-1121, "Invalid symbol.")
    return symbol


def _integer(params: dict[str, str], name: str, default: int | None, minimum: int) -> Any:
    value = params.get(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value):
        raise _BadRequest(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
        )
    number = int(value)
    if number < minimum:
        raise _BadRequest(-1130, f"Data sent for parameter '{name}' is not valid.")
    return number
