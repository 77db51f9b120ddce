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


class _Decimal:
    """A price or quantity: kept as the exchange's string, a ``Decimal`` when read (decoding
    stays as fast as the dicts; the conversion is paid only for the fields you use)."""

    def __init__(self, raw: str) -> None:
        self.raw = raw

    def __get__(self, message: object, owner: type | None = None) -> Decimal:
        return Decimal(getattr(message, self.raw))


class _OptionalDecimal(_Decimal):
    def __get__(self, message: object, owner: type | None = None) -> Decimal | None:  # type: ignore[override]
        raw = getattr(message, self.raw)
        return None if raw is None else Decimal(raw)


class _Message(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Every typed payload: immutable, compared by value, ``repr`` with the readable names."""

    def __repr__(self) -> str:
        shown = (name[1:] if name.startswith("_") else name for name in self.__struct_fields__)
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in shown)})"


class Trade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@trade``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    trade_id: int = _f("t")
    _price: str = _f("p")
    _quantity: str = _f("q")
    trade_time: int = _f("T")
    buyer_is_maker: bool = _f("m")
    best_match: bool | None = _o("M")

    price = _Decimal("_price")
    quantity = _Decimal("_quantity")


class AggTrade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@aggTrade`` (spot and futures)."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    agg_trade_id: int = _f("a")
    _price: str = _f("p")
    _quantity: str = _f("q")
    first_trade_id: int = _f("f")
    last_trade_id: int = _f("l")
    trade_time: int = _f("T")
    buyer_is_maker: bool = _f("m")
    best_match: bool | None = _o("M")

    price = _Decimal("_price")
    quantity = _Decimal("_quantity")


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
    _best_bid_price: str = _f("b")
    _best_bid_quantity: str = _f("B")
    _best_ask_price: str = _f("a")
    _best_ask_quantity: str = _f("A")
    event_type: str | None = _o("e")
    event_time: int | None = _o("E")
    transaction_time: int | None = _o("T")

    best_bid_price = _Decimal("_best_bid_price")
    best_bid_quantity = _Decimal("_best_bid_quantity")
    best_ask_price = _Decimal("_best_ask_price")
    best_ask_quantity = _Decimal("_best_ask_quantity")


class KlineBar(_Message, frozen=True, kw_only=True, gc=False):
    """The bar of a :class:`Kline` event."""

    start_time: int = _f("t")
    close_time: int = _f("T")
    symbol: str = _f("s")
    interval: str = _f("i")
    first_trade_id: int = _f("f")
    last_trade_id: int = _f("L")
    _open: str = _f("o")
    _close: str = _f("c")
    _high: str = _f("h")
    _low: str = _f("l")
    _volume: str = _f("v")
    trade_count: int = _f("n")
    closed: bool = _f("x")
    _quote_volume: str = _f("q")
    _taker_buy_volume: str = _f("V")
    _taker_buy_quote_volume: str = _f("Q")

    open = _Decimal("_open")
    close = _Decimal("_close")
    high = _Decimal("_high")
    low = _Decimal("_low")
    volume = _Decimal("_volume")
    quote_volume = _Decimal("_quote_volume")
    taker_buy_volume = _Decimal("_taker_buy_volume")
    taker_buy_quote_volume = _Decimal("_taker_buy_quote_volume")


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
    _price_change: str = _f("p")
    _price_change_percent: str = _f("P")
    _weighted_average_price: str = _f("w")
    _last_price: str = _f("c")
    _last_quantity: str = _f("Q")
    _open_price: str = _f("o")
    _high_price: str = _f("h")
    _low_price: str = _f("l")
    _volume: str = _f("v")
    _quote_volume: str = _f("q")
    open_time: int = _f("O")
    close_time: int = _f("C")
    first_trade_id: int = _f("F")
    last_trade_id: int = _f("L")
    trade_count: int = _f("n")
    _first_trade_price: str | None = _o("x")
    _best_bid_price: str | None = _o("b")
    _best_bid_quantity: str | None = _o("B")
    _best_ask_price: str | None = _o("a")
    _best_ask_quantity: str | None = _o("A")

    price_change = _Decimal("_price_change")
    price_change_percent = _Decimal("_price_change_percent")
    weighted_average_price = _Decimal("_weighted_average_price")
    last_price = _Decimal("_last_price")
    last_quantity = _Decimal("_last_quantity")
    open_price = _Decimal("_open_price")
    high_price = _Decimal("_high_price")
    low_price = _Decimal("_low_price")
    volume = _Decimal("_volume")
    quote_volume = _Decimal("_quote_volume")
    first_trade_price = _OptionalDecimal("_first_trade_price")
    best_bid_price = _OptionalDecimal("_best_bid_price")
    best_bid_quantity = _OptionalDecimal("_best_bid_quantity")
    best_ask_price = _OptionalDecimal("_best_ask_price")
    best_ask_quantity = _OptionalDecimal("_best_ask_quantity")


class MiniTicker(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@miniTicker``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    _close_price: str = _f("c")
    _open_price: str = _f("o")
    _high_price: str = _f("h")
    _low_price: str = _f("l")
    _volume: str = _f("v")
    _quote_volume: str = _f("q")

    close_price = _Decimal("_close_price")
    open_price = _Decimal("_open_price")
    high_price = _Decimal("_high_price")
    low_price = _Decimal("_low_price")
    volume = _Decimal("_volume")
    quote_volume = _Decimal("_quote_volume")


class MarkPrice(_Message, frozen=True, kw_only=True, gc=False):
    """Futures ``<symbol>@markPrice[@1s]``."""

    event_type: str = _f("e")
    event_time: int = _f("E")
    symbol: str = _f("s")
    _mark_price: str = _f("p")
    _index_price: str | None = _o("i")
    _estimated_settle_price: str | None = _o("P")
    _funding_rate: str | None = _o("r")
    next_funding_time: int | None = _o("T")

    mark_price = _Decimal("_mark_price")
    index_price = _OptionalDecimal("_index_price")
    estimated_settle_price = _OptionalDecimal("_estimated_settle_price")
    funding_rate = _OptionalDecimal("_funding_rate")


class ReferencePrice(_Message, frozen=True, kw_only=True, gc=False):
    """Spot ``<symbol>@referencePrice``: no event time; ``reference_price`` may be ``None``."""

    symbol: str = _f("s")
    _reference_price: str | None = _o("r")
    time: int | None = _o("t")
    event_type: str | None = _o("e")

    reference_price = _OptionalDecimal("_reference_price")


class BlockTrade(_Message, frozen=True, kw_only=True, gc=False):
    """``<symbol>@blockTrade``: a trade agreed off the book."""

    symbol: str = _f("s")
    _price: str = _f("p")
    _quantity: str = _f("q")
    event_type: str | None = _o("e")
    event_time: int | None = _o("E")
    trade_id: int | None = _o("t")
    trade_time: int | None = _o("T")

    price = _Decimal("_price")
    quantity = _Decimal("_quantity")
