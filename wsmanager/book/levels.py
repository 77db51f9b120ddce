"""The pure order book: price levels as ``Decimal``, diffs applied in place, best first reads.

No threads, no I/O. One :class:`BookSide` per side keeps a ``dict`` price -> quantity and a
sorted list of prices (ascending), so an update of an existing level is one dict store, a new or
removed level one binary search plus a list insert/delete, and the top ``n`` levels a slice.
Price strings are converted to ``Decimal`` once: a memo maps each string seen to its ``Decimal``
(the exchange repeats the same strings), bounded so it cannot outgrow the book.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

__all__ = ["BookSide", "Level", "Levels"]

Level = tuple[Decimal, Decimal]  # (price, quantity)

_MEMO_SLACK = 1024  # the price memo may hold this many more entries than the side has levels


class BookSide:
    """One side of a book. ``descending=True`` for bids (best = highest price)."""

    __slots__ = ("_levels", "_memo", "_prices", "descending")

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self._levels: dict[Decimal, Decimal] = {}
        self._prices: list[Decimal] = []  # ascending, always exactly the keys of _levels
        self._memo: dict[str, Decimal] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def clear(self) -> None:
        self._levels = {}
        self._prices = []
        self._memo = {}

    def apply(self, changes: Iterable[Sequence[str]]) -> None:
        """Set each ``[price, quantity]``; quantity 0 removes the level.

        Raises ``ValueError`` naming the bad level. A side that raised may hold part of the
        changes: the caller discards it (the book resynchronises).
        """
        levels = self._levels
        prices = self._prices
        memo = self._memo
        for change in changes:
            try:
                raw_price, raw_quantity = change
                price = memo.get(raw_price)
                if price is None:
                    if not isinstance(change, (list, tuple)):
                        raise TypeError(change)
                    price = _price(raw_price)
                    if len(memo) > 2 * len(levels) + _MEMO_SLACK:
                        memo.clear()
                    memo[raw_price] = price
                quantity = Decimal(raw_quantity)
            except (TypeError, ValueError, InvalidOperation):
                raise ValueError(f"bad price level {change!r}: want [price, quantity]") from None
            if quantity:
                if quantity.is_signed() or not quantity.is_finite():
                    raise ValueError(f"bad price level {change!r}: negative or not finite")
                if price not in levels:
                    insort(prices, price)
                levels[price] = quantity
            elif price in levels:
                del levels[price]
                del prices[bisect_left(prices, price)]

    def load(self, levels: Iterable[Sequence[str]]) -> None:
        """Replace the side with ``levels`` (a snapshot); zero quantities are skipped."""
        self.clear()
        loaded: dict[Decimal, Decimal] = {}
        for change in levels:
            try:
                if not isinstance(change, (list, tuple)):
                    raise TypeError(change)
                raw_price, raw_quantity = change
                price = _price(raw_price)
                quantity = Decimal(raw_quantity)
            except (TypeError, ValueError, InvalidOperation):
                raise ValueError(f"bad price level {change!r}: want [price, quantity]") from None
            if quantity.is_signed() or not quantity.is_finite():
                raise ValueError(f"bad price level {change!r}: negative or not finite")
            if quantity:
                loaded[price] = quantity
        self._levels = loaded
        self._prices = sorted(loaded)

    def best(self) -> Level | None:
        if not self._prices:
            return None
        price = self._prices[-1] if self.descending else self._prices[0]
        return price, self._levels[price]

    def top(self, n: int | None = None) -> list[Level]:
        """The best ``n`` levels (all when ``n`` is None), best first."""
        prices = self._prices
        if n is None or n >= len(prices):
            chosen = prices[::-1] if self.descending else prices[:]
        elif n <= 0:
            return []
        else:
            chosen = prices[: -n - 1 : -1] if self.descending else prices[:n]
        levels = self._levels
        return [(price, levels[price]) for price in chosen]

    def get(self, price: Decimal) -> Decimal | None:
        return self._levels.get(price)


def _price(raw: str) -> Decimal:
    if not isinstance(raw, str):
        raise TypeError(raw)
    price = Decimal(raw)
    if not price.is_finite() or price.is_signed() or not price:
        raise ValueError(raw)
    return price


class Levels:
    """Both sides of a book, with an update of an exchange's ``b``/``a`` lists."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        self.bids.load(bids)
        self.asks.load(asks)

    def apply(self, bids: Iterable[Sequence[str]], asks: Iterable[Sequence[str]]) -> None:
        self.bids.apply(bids)
        self.asks.apply(asks)
