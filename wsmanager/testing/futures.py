"""The fake exchange's futures markets (``FakeExchange(market="usdm")`` or ``"coinm"``).

What USD-M (and COIN-M) futures do differently from spot, as the exchange documents it (2026):

- **Routes** (USD-M only): ``/public/ws``, ``/public/stream?streams=`` serve ``@depth*``,
  ``@bookTicker``, ``!bookTicker``, ``@rpiDepth``; ``/market/...`` every other market stream
  (:func:`wsmanager.endpoints.usdm_route`). The decommissioned root (``/ws``, ``/stream``) and
  the wrong route accept the handshake and ``SUBSCRIBE`` and then send nothing for the stream.
- **Depth** events carry ``E``, ``T``, ``U``, ``u`` and ``pu`` (the ``u`` of the stream's event
  before): they chain by ``pu``, and ``U`` jumps past ``pu + 1`` (update ids consumed by changes
  the stream never shows). ``skip`` breaks the chain: an event is made and never sent.
- **Payloads**: ``aggTrade`` without ``M``, ``bookTicker`` with ``e``, ``E`` and ``T``,
  ``markPriceUpdate`` (``@markPrice``, ``!markPrice@arr``).
- **REST** under ``/fapi/v1`` (USD-M) or ``/dapi/v1`` (COIN-M): ``depth`` (with ``E`` and ``T``)
  and ``aggTrades``; ``/api/v3/...`` does not exist there (404).
"""

from __future__ import annotations

import functools
import random
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..endpoints import USDM_ROUTES, usdm_route
from .book import DepthFeed, OrderBook
from .control import Route, route
from .payloads import AggTradeFeed, BookTickerFeed, CounterFeed, stream_symbol

__all__ = [
    "FUTURES_HIDDEN_IDS",
    "MARKETS",
    "REST_PREFIXES",
    "FuturesAggTradeFeed",
    "FuturesBookTickerFeed",
    "FuturesDepthFeed",
    "MarkPriceFeed",
    "futures_depth_weight",
    "route_of",
    "routed_path",
]

MARKETS = ("spot", "usdm", "coinm")
REST_PREFIXES = {"spot": "/api/v3", "usdm": "/fapi/v1", "coinm": "/dapi/v1"}
FUTURES_HIDDEN_IDS = 3  # up to this many update ids per change that no depth event shows
_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")


@functools.lru_cache(maxsize=4096)
def route_of(stream: str) -> str | None:
    """The USD-M route of ``stream`` (cached: asked for every message sent)."""
    return usdm_route(stream)


def routed_path(path: str) -> tuple[str | None, Route | None]:
    """``(route, what the path opens)``: ``/public/stream?streams=a`` -> ``("public", ...)``;
    the root (``/ws``, ``/stream``) has route None."""
    parts = urlsplit(path)
    for name in USDM_ROUTES:
        prefix = "/" + name
        if parts.path == prefix or parts.path.startswith(prefix + "/"):
            rest = parts.path[len(prefix) :] or "/"
            return name, route(urlunsplit(("", "", rest, parts.query, "")))
    return None, route(path)


def futures_depth_weight(limit: int) -> int:
    """The request weight of ``GET /fapi/v1/depth`` by ``limit``."""
    if limit <= 50:
        return 2
    if limit <= 100:
        return 5
    if limit <= 500:
        return 10
    return 20


class FuturesDepthFeed(DepthFeed):
    """``<symbol>@depth[@100ms|@500ms]`` of a futures market: events chained by ``pu``."""

    def __init__(self, book: OrderBook) -> None:
        super().__init__(book)
        self.previous = book.last_update_id  # the u of the last event made (sent or not)

    def _emit(self) -> dict[str, Any]:
        event = super()._emit()
        now = event["E"]
        out = {
            "e": "depthUpdate",
            "E": now,
            "T": now - 1,
            "s": event["s"],
            "U": event["U"],
            "u": event["u"],
            "pu": self.previous,
            "b": event["b"],
            "a": event["a"],
        }
        self.previous = event["u"]
        return out

    def skip(self, count: int) -> None:
        """Make an event of ``count`` update ids that is never sent: the next event's ``pu``
        names it, so a client sees the chain break."""
        if self._first is not None:
            self._held.append(self._emit())
        change = self.book.step(ids=count, exclude=self)
        self.number = self.previous = change.last_id


class FuturesAggTradeFeed(AggTradeFeed):
    """``<symbol>@aggTrade`` of a futures market (no ``M``)."""

    def next_payloads(self) -> list[Any]:
        trade = self._make()
        payload = {"e": "aggTrade", "E": trade["T"] + 1, "s": self.symbol, **trade}
        payload.pop("M", None)
        return [payload]


class FuturesBookTickerFeed(BookTickerFeed):
    """``<symbol>@bookTicker`` of a futures market: with ``e``, ``E`` and ``T``."""

    def next_payloads(self) -> list[Any]:
        ticker = super().next_payloads()[0]
        now = int(time.time() * 1000)
        return [{"e": "bookTicker", "u": ticker.pop("u"), "E": now, "T": now - 1, **ticker}]


def _mark_price(symbol: str, now: int, rng: random.Random) -> dict[str, Any]:
    price = rng.uniform(20_000, 70_000)
    return {
        "e": "markPriceUpdate",
        "E": now,
        "s": symbol,
        "p": f"{price:.8f}",
        "i": f"{price * rng.uniform(0.999, 1.001):.8f}",
        "P": f"{price * rng.uniform(0.999, 1.001):.8f}",
        "r": f"{rng.uniform(-0.001, 0.001):.8f}",
        "T": now - now % 28_800_000 + 28_800_000,  # the next funding time
    }


class MarkPriceFeed(CounterFeed):
    """``<symbol>@markPrice[@1s]`` (``markPriceUpdate``) and ``!markPrice@arr[@1s]`` (a list)."""

    def next_payloads(self) -> list[Any]:
        self.number += 1
        now = int(time.time() * 1000)
        if self.stream.startswith("!"):
            return [[_mark_price(s, now, self.rng) for s in _SYMBOLS]]
        return [_mark_price(stream_symbol(self.stream), now, self.rng)]
