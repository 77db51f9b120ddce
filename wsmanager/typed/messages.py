"""Immutable, typed market payloads (msgspec Structs) with readable names.

Each class decodes the exchange's JSON straight from the frame's bytes: the short keys
(``"p"``, ``"q"``…) become readable attributes, prices and quantities become ``Decimal``, fields
the class does not name are ignored (the exchange may add some at any time). Optional fields are
those only one market (spot or futures) sends; they are ``None`` where absent. The field table is
in ``docs/typed.md``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

__all__ = [
    "AggTrade",
    "BlockTrade",
    "BookTicker",
    "DepthUpdate",
    "Kline",
    "KlineBar",
    "MarkPrice",
    "MiniTicker",
    "PartialDepth",
    "ReferencePrice",
    "Ticker",
    "Trade",
]

Level = tuple[Decimal, Decimal]  # (price, quantity)


def _f(key: str) -> Any:
    return msgspec.field(name=key)


def _o(key: str) -> Any:
    return msgspec.field(name=key, default=None)


class _Message(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Every typed payload: immutable, compared by value, ``repr`` with the readable names."""


class Trade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@trade``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    trade_id: int = _f("t")
    price: Decimal = _f("p")
    quantity: Decimal = _f("q")
    trade_time: int = _f("T")
    buyer_is_maker: bool = _f("m")
    best_match: bool | None = _o("M")


class AggTrade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@aggTrade`` (spot and futures)."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    agg_trade_id: int = _f("a")
    price: Decimal = _f("p")
    quantity: Decimal = _f("q")
    first_trade_id: int = _f("f")
    last_trade_id: int = _f("l")
    trade_time: int = _f("T")
    buyer_is_maker: bool = _f("m")
    best_match: bool | None = _o("M")


class DepthUpdate(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@depth[@100ms]`` (and futures ``@depth<N>``): a diff of the order book."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    first_update_id: int = _f("U")
    final_update_id: int = _f("u")
    previous_final_update_id: int | None = _o("pu")
    transaction_time: int | None = _o("T")
    bids: tuple[Level, ...] = _f("b")
    asks: tuple[Level, ...] = _f("a")


class PartialDepth(_Message, frozen=True, kw_only=True, gc=False):
    """Spot ``<symbol>@depth<5|10|20>[@100ms]``: the top levels."""

    last_update_id: int = _f("lastUpdateId")
    bids: tuple[Level, ...] = _f("bids")
    asks: tuple[Level, ...] = _f("asks")


class BookTicker(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@bookTicker``: the best bid and ask."""

    update_id: int = _f("u")
    symbol: str = _f("s")
    best_bid_price: Decimal = _f("b")
    best_bid_quantity: Decimal = _f("B")
    best_ask_price: Decimal = _f("a")
    best_ask_quantity: Decimal = _f("A")
    event_type: str | None = _o("e")
    event_time: int | None = _o("E")
    transaction_time: int | None = _o("T")


class KlineBar(_Message, frozen=True, kw_only=True, gc=False):
    """The bar of a :class:`Kline` event."""

    start_time: int = _f("t")
    close_time: int = _f("T")
    symbol: str = _f("s")
    interval: str = _f("i")
    first_trade_id: int = _f("f")
    last_trade_id: int = _f("L")
    open: Decimal = _f("o")
    close: Decimal = _f("c")
    high: Decimal = _f("h")
    low: Decimal = _f("l")
    volume: Decimal = _f("v")
    trade_count: int = _f("n")
    closed: bool = _f("x")
    quote_volume: Decimal = _f("q")
    taker_buy_volume: Decimal = _f("V")
    taker_buy_quote_volume: Decimal = _f("Q")


class Kline(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@kline_<interval>``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    kline: KlineBar = _f("k")


class Ticker(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@ticker`` (24 h rolling statistics); spot-only fields are ``None`` on futures."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    price_change: Decimal = _f("p")
    price_change_percent: Decimal = _f("P")
    weighted_average_price: Decimal = _f("w")
    last_price: Decimal = _f("c")
    last_quantity: Decimal = _f("Q")
    open_price: Decimal = _f("o")
    high_price: Decimal = _f("h")
    low_price: Decimal = _f("l")
    volume: Decimal = _f("v")
    quote_volume: Decimal = _f("q")
    open_time: int = _f("O")
    close_time: int = _f("C")
    first_trade_id: int = _f("F")
    last_trade_id: int = _f("L")
    trade_count: int = _f("n")
    first_trade_price: Decimal | None = _o("x")
    best_bid_price: Decimal | None = _o("b")
    best_bid_quantity: Decimal | None = _o("B")
    best_ask_price: Decimal | None = _o("a")
    best_ask_quantity: Decimal | None = _o("A")


class MiniTicker(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@miniTicker``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    close_price: Decimal = _f("c")
    open_price: Decimal = _f("o")
    high_price: Decimal = _f("h")
    low_price: Decimal = _f("l")
    volume: Decimal = _f("v")
    quote_volume: Decimal = _f("q")


class MarkPrice(_Message, frozen=True, kw_only=True, gc=False):
    """Futures ``<symbol>@markPrice[@1s]``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    mark_price: Decimal = _f("p")
    index_price: Decimal | None = _o("i")
    estimated_settle_price: Decimal | None = _o("P")
    funding_rate: Decimal | None = _o("r")
    next_funding_time: int | None = _o("T")


class ReferencePrice(_Message, frozen=True, kw_only=True, gc=False):
    """Spot ``<symbol>@referencePrice``: no event time; ``reference_price`` may be ``None``."""

    symbol: str = _f("s")
    reference_price: Decimal | None = _o("r")
    time: int | None = _o("t")
    event_type: str | None = _o("e")


class BlockTrade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@blockTrade``: a trade agreed off the book."""

    symbol: str = _f("s")
    price: Decimal = _f("p")
    quantity: Decimal = _f("q")
    event_type: str | None = _o("e")
    event_time: int | None = _o("E")
    trade_id: int | None = _o("t")
    trade_time: int | None = _o("T")
