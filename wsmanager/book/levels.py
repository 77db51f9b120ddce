"""The pure order book: price levels kept exactly, diffs applied in place, best first reads.

No threads, no I/O, and tuned: a busy book applies thousands of levels a second, so the work
per level is done by C code wherever it can be. A side keeps

- the exchange's own strings, ``price -> quantity``, in a dict: one ``dict.update`` per event
  sets every quantity (a change to a level already in the book costs no Python code at all);
- its prices in order, best last (inserts and deletes near the top of the book move little
  memory): a sorted list of sort keys, and dicts between keys and price strings. The key is the
  price as a ``float`` (bisecting floats is three times faster than ``Decimal``), negated for
  asks. Floats order decimal prices exactly and tell distinct ones apart up to 15 significant
  digits; if two distinct prices ever share a float, the side switches to ``Decimal`` keys.

Quantities are checked as text (digits, at most one dot) without converting them, and become
``Decimal`` when read, so every value a reader gets is exactly the exchange's. New prices must
be positive and finite. Two spellings of one price (``"10.0"``, ``"10.00"``) are one level.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from operator import itemgetter

__all__ = ["BookSide", "Level", "Levels"]

Level = tuple[Decimal, Decimal]  # (price, quantity)
Key = float | Decimal

_DELETE_DIGITS = str.maketrans("", "", "0123456789")
_BAD = (TypeError, ValueError, InvalidOperation)
_BAD_CHANGE = (TypeError, ValueError, IndexError, KeyError)
_price_of = itemgetter(0)
_quantity_of = itemgetter(1)


class BookSide:
    """One side of a book. ``descending=True`` for bids (best = highest price)."""

    __slots__ = (
        "_exact",
        "_key_of",
        "_keys",
        "_price_of",
        "_quantity",
        "_sign",
        "descending",
    )

    def __init__(self, descending: bool) -> None:
        self.descending = descending
        self._sign = 1.0 if descending else -1.0  # key = sign * price: ascending, best last
        self._exact = False  # keys are Decimals (two distinct prices shared a float)
        self._quantity: dict[str, str] = {}  # price -> quantity, the exchange's strings
        self._key_of: dict[str, Key] = {}  # price -> its key: exactly the levels
        self._price_of: dict[Key, str] = {}  # key -> price
        self._keys: list[Key] = []  # ascending

    def __len__(self) -> int:
        return len(self._keys)

    def clear(self) -> None:
        self._exact = False
        self._quantity = {}
        self._key_of = {}
        self._price_of = {}
        self._keys = []

    # -- changes ---------------------------------------------------------------------------------

    def apply(self, changes: Sequence[Sequence[str]]) -> None:
        """Set each ``[price, quantity]`` (strings) in order; quantity 0 removes the level.

        Raises ``ValueError`` naming a bad level. A side that raised may hold part of the
        changes: the caller discards it (the book resynchronises).
        """
        if not changes:
            return
        try:
            quantities = "\x00".join(map(_quantity_of, changes))
            prices = set(map(_price_of, changes))
        except _BAD_CHANGE:
            raise ValueError(f"bad price level in {_first_bad(changes)!r}") from None
        text = quantities.encode("utf-8", "replace")  # bytes.translate: no per-call dict
        marks = text.translate(None, b"0123456789")  # dots and separators, if well formed
        if marks.translate(None, b".\x00") or b".." in marks:
            raise ValueError(f"bad price level in {_first_bad(changes)!r}")
        book = self._quantity
        key_of = self._key_of
        price_of = self._price_of
        keys = self._keys
        new: dict[str, Key] = {}
        added = prices.difference(key_of)
        if added:
            sign = self._sign
            exact = self._exact
            for price in added:
                if exact or type(price) is not str:
                    new[price] = self._key(price)
                    continue
                try:
                    value = float(price)
                except ValueError:
                    value = math.nan
                if not 0.0 < value < math.inf:
                    self._key(price)  # raises, naming it
                new[price] = sign * value
            if len(changes) > 1 and (
                len(set(new.values())) != len(new) or not price_of.keys().isdisjoint(new.values())
            ):  # a price spelled two ways (or two prices sharing a float): one at a time
                for change in changes:
                    self.apply((change,))
                return
        try:
            book.update(changes)  # type: ignore[arg-type]
        except _BAD_CHANGE:
            raise ValueError(f"bad price level in {_first_bad(changes)!r}") from None
        non_zero = text.translate(None, b"0.").split(b"\x00")  # b"" = zero
        zeros = non_zero.count(b"")
        if zeros:
            repeated = len(prices) != len(changes)
            index = -1
            for _ in range(zeros):
                index = non_zero.index(b"", index + 1)
                price = changes[index][0]
                if repeated:  # the last change of a price wins
                    quantity = book.get(price)
                    if quantity is None or quantity.strip("0."):
                        continue
                if not book.pop(price).strip("."):
                    raise ValueError(f"bad price level in {_first_bad(changes)!r}")
                key = key_of.pop(price, None)
                if key is None:  # not in the book
                    self._remove_spelled_otherwise(price, new.pop(price))
                else:
                    del price_of[key]
                    del keys[bisect_left(keys, key)]  # type: ignore[arg-type]
        for price, key in new.items():
            if key in price_of:
                self._insert(price, key)
            else:
                keys.insert(bisect_left(keys, key), key)  # type: ignore[arg-type]
                price_of[key] = price
                key_of[price] = key

    def _insert(self, price: str, key: Key) -> None:
        """Put a new price (its quantity already set) in order."""
        other = self._price_of.get(key)
        if other is not None:  # the same price spelled otherwise, or a float collision
            if Decimal(other) == Decimal(price):
                del self._quantity[other]
                del self._key_of[other]
                self._price_of[key] = price
                self._key_of[price] = key
                return
            self._use_decimal_keys()
            self._insert(price, self._key(price))
            return
        keys = self._keys
        keys.insert(bisect_left(keys, key), key)  # type: ignore[arg-type]
        self._price_of[key] = price
        self._key_of[price] = key

    def _drop(self, price: str, key: Key) -> None:
        """Take ``price`` (already out of the quantity and key dicts) out of the order."""
        del self._price_of[key]
        keys = self._keys
        del keys[bisect_left(keys, key)]  # type: ignore[arg-type]

    def _remove_spelled_otherwise(self, price: str, key: Key) -> None:
        """A removal naming a price not in the book: the same price spelled otherwise goes."""
        other = self._price_of.get(key)
        if other is not None and Decimal(other) == Decimal(price):
            del self._quantity[other]
            del self._key_of[other]
            self._drop(other, key)

    def _key(self, price: object) -> Key:
        """The sort key of a price string; ``ValueError`` unless a positive finite decimal."""
        try:
            if type(price) is not str:
                raise TypeError(price)
            value = float(price)
            if not 0.0 < value < math.inf:
                raise ValueError(price)
            if self._exact:
                number = Decimal(price)
                return number if self._sign > 0 else -number
        except _BAD:
            raise ValueError(
                f"bad price level: price {price!r} is not a positive decimal"
            ) from None
        return self._sign * value

    def _use_decimal_keys(self) -> None:
        """Two distinct prices share a float: order by ``Decimal`` from now on."""
        self._exact = True
        self._key_of = {price: self._key(price) for price in self._key_of}
        self._price_of = {key: price for price, key in self._key_of.items()}
        self._keys = sorted(self._price_of)  # type: ignore[type-var]

    def load(self, levels: Sequence[Sequence[str]]) -> None:
        """Replace the side with ``levels`` (a snapshot); zero quantities are skipped."""
        self.clear()
        try:
            self.apply(levels)
        except ValueError:
            self.clear()
            raise

    # -- reads -----------------------------------------------------------------------------------

    def best(self) -> Level | None:
        if not self._keys:
            return None
        price = self._price_of[self._keys[-1]]
        return Decimal(price), Decimal(self._quantity[price])

    def top(self, n: int | None = None) -> list[Level]:
        """The best ``n`` levels (all when ``n`` is None), best first."""
        if n is None:
            keys = self._keys[::-1]
        elif n <= 0:
            return []
        else:
            keys = self._keys[: -n - 1 : -1]
        price_of = self._price_of
        quantity = self._quantity
        return [
            (Decimal(price), Decimal(quantity[price])) for price in (price_of[key] for key in keys)
        ]

    def get(self, price: Decimal) -> Decimal | None:
        """The quantity at ``price``, or None."""
        try:
            key = self._key(str(price))
        except ValueError:
            return None
        spelled = self._price_of.get(key)
        if spelled is None or Decimal(spelled) != price:
            return None
        return Decimal(self._quantity[spelled])


def _first_bad(changes: Sequence[Sequence[str]]) -> object:
    """The first change that is not ``[positive price string, non-negative quantity string]``."""
    for change in changes:
        try:
            if not isinstance(change, (list, tuple)) or len(change) != 2:
                return change
            price, quantity = change
            if not isinstance(price, str) or not 0 < Decimal(price) < math.inf:
                return change
            marks = quantity.translate(_DELETE_DIGITS)
            if marks not in ("", ".") or not quantity.strip("."):
                return change
        except (*_BAD, AttributeError):
            return change
    return changes


class Levels:
    """Both sides of a book, with an update of an exchange's ``b``/``a`` lists."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids = BookSide(descending=True)
        self.asks = BookSide(descending=False)

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def load(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        self.bids.load(bids)
        self.asks.load(asks)

    def apply(self, bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> None:
        self.bids.apply(bids)
        self.asks.apply(asks)
