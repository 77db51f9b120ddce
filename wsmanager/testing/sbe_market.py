"""The SBE side of the fake exchange's market (``FakeExchange(encoding="sbe")``).

Binance serves four streams in SBE at ``stream-sbe.binance.com``; their feeds here make the
contract-shaped dicts (times in microseconds) that :func:`encode_message` turns into one binary
frame each, as the real exchange sequences them:

- ``<symbol>@trade``: one event carries 1..3 trades, trade ids ``t`` contiguous across events;
- ``<symbol>@bestBidAsk``: ``u`` (the book update id) increasing by a random 1..5;
- ``<symbol>@depth``: the true book's diffs (``U``/``u`` as the JSON ``@depth``);
- ``<symbol>@depth20``: the top 20 levels of the true book, ``lastUpdateId``.

Prices and quantities go out with exponent -8 (the fake's strings have 8 decimals).
"""

from __future__ import annotations

import random
import time
from typing import Any

from ..sbe.streams import SBE_STREAM_KINDS, is_sbe_stream
from .book import DepthFeed, OrderBook, PartialDepthFeed
from .payloads import BookTickerFeed, TradeFeed, stream_kind
from .sbe import encode_payloads

__all__ = [
    "SBE_KINDS",
    "SbeBestBidAskFeed",
    "SbeDepthFeed",
    "SbePartialDepthFeed",
    "SbeTradeFeed",
    "encode_message",
    "is_sbe_stream",
    "make_sbe_feed",
    "sbe_kind",
]

SBE_KINDS = SBE_STREAM_KINDS
EXPONENT = -8


def sbe_kind(stream: str) -> str:
    kind = stream_kind(stream)
    return "depth20" if kind == "partial_depth" else kind


def _now_us() -> int:
    return time.time_ns() // 1000


class SbeTradeFeed(TradeFeed):
    """``<symbol>@trade``: each message is one event of 1..3 trades (a list of trade dicts)."""

    def next_payloads(self) -> list[Any]:
        now = _now_us()
        trades = []
        for _ in range(self.walk.rng.randint(1, 3)):
            self.number += 1
            trades.append(
                {
                    "e": "trade",
                    "E": now,
                    "s": self.symbol,
                    "t": self.number,
                    "p": self.walk.price(),
                    "q": self.walk.qty(),
                    "T": now,
                    "m": self.walk.rng.random() < 0.5,
                    "M": True,
                }
            )
        return [trades]


class SbeBestBidAskFeed(BookTickerFeed):
    """``<symbol>@bestBidAsk``: a bookTicker with ``e``, ``E`` (µs) and the update id ``u``."""

    def next_payloads(self) -> list[Any]:
        (ticker,) = super().next_payloads()
        return [{"e": "bestBidAsk", "E": _now_us(), **ticker}]


class SbeDepthFeed(DepthFeed):
    """``<symbol>@depth``: the JSON diff-depth events, ``E`` in microseconds."""

    def _emit(self) -> dict[str, Any]:
        event = super()._emit()
        event["E"] = _now_us()
        return event


class SbePartialDepthFeed(PartialDepthFeed):
    """``<symbol>@depth20``: the top 20 levels with ``e``, ``E`` (µs) and ``s``."""

    def __init__(self, book: OrderBook) -> None:
        super().__init__(book, 20)

    def next_payloads(self) -> list[Any]:
        (top,) = super().next_payloads()
        return [{"e": "depth20", "E": _now_us(), "s": self.book.symbol, **top}]


def make_sbe_feed(stream: str, rng: random.Random, book: OrderBook | None) -> Any:
    """The feed of one of the four SBE streams (``book``: the symbol's, for depth streams)."""
    kind = sbe_kind(stream)
    if kind == "trade":
        return SbeTradeFeed(stream, rng)
    if kind == "bestBidAsk":
        return SbeBestBidAskFeed(stream, rng)
    assert book is not None
    if kind == "depth":
        return SbeDepthFeed(book)
    return SbePartialDepthFeed(book)


def encode_message(payload: Any) -> bytes:
    """One binary frame: a list of trade dicts (one event) or one dict."""
    payloads = payload if isinstance(payload, list) else [payload]
    return encode_payloads(payloads, price_exponent=EXPONENT, qty_exponent=EXPONENT)
