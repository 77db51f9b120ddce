"""The exchange's true order book per symbol, and the depth streams that are its diffs.

Prices are whole cents and quantities whole lots of 0.00001 inside (exact integers), Binance's
8-decimal strings on the wire and :class:`~decimal.Decimal` in :class:`TrueBook`. Each change
consumes one or more update ids; a depth stream's event carries every change since its previous
event (``U`` = first id, ``u`` = last id; the next ``U`` is the last ``u`` + 1). The book keeps
the last :data:`BOOK_HISTORY` changes, so it can tell what it was at an earlier update id.
Only the server's loop thread touches an :class:`OrderBook`; :class:`TrueBook` is a frozen copy.
"""

from __future__ import annotations

import bisect
import random
import time
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = ["BOOK_HISTORY", "DepthFeed", "OrderBook", "PartialDepthFeed", "TrueBook"]

BOOK_HISTORY = 20_000  # changes remembered per symbol (for snapshots "as it was then")

Level = tuple[Decimal, Decimal]


def price_str(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}000000"


def qty_str(lots: int) -> str:
    return f"{lots // 100_000}.{lots % 100_000:05d}000"


@dataclass(frozen=True)
class TrueBook:
    """The true book of one symbol at ``last_update_id`` (a consistent, frozen copy)."""

    symbol: str
    last_update_id: int
    _bids: tuple[Level, ...] = field(repr=False)  # best (highest) first
    _asks: tuple[Level, ...] = field(repr=False)  # best (lowest) first

    def bids(self, limit: int | None = None) -> list[Level]:
        """``(price, quantity)`` levels, best first (all, or the top ``limit``)."""
        return list(self._bids[:limit])

    def asks(self, limit: int | None = None) -> list[Level]:
        return list(self._asks[:limit])

    def best_bid(self) -> Level | None:
        return self._bids[0] if self._bids else None

    def best_ask(self) -> Level | None:
        return self._asks[0] if self._asks else None


@dataclass
class _Change:
    first_id: int
    last_id: int
    bids: dict[int, int]  # price -> new quantity (0: removed)
    asks: dict[int, int]
    old_bids: dict[int, int]  # price -> quantity before (0: absent)
    old_asks: dict[int, int]


class OrderBook:
    """One symbol's book, changed at random by :meth:`step`, deterministic for a given ``rng``."""

    def __init__(self, symbol: str, rng: random.Random, levels: int) -> None:
        self.symbol = symbol
        self.rng = rng
        self.levels = max(1, levels)
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self.bid_prices: list[int] = []  # ascending: best bid last
        self.ask_prices: list[int] = []  # ascending: best ask first
        self.last_update_id = rng.randint(10_000, 9_999_999)
        self.hidden_ids = 0  # futures: up to this many ids before each change that no event shows
        self.history: deque[_Change] = deque(maxlen=BOOK_HISTORY)
        self.feeds: list[DepthFeed] = []
        mid = rng.randint(2_000_000, 7_000_000)
        bid, ask = mid, mid
        for _ in range(self.levels):
            bid -= rng.randint(1, 3)
            ask += rng.randint(1, 3)
            self._set(True, bid, self._lots())
            self._set(False, ask, self._lots())

    # -- changes -----------------------------------------------------------------------------

    def _lots(self) -> int:
        return self.rng.randint(1, 500_000)  # 0.00001 .. 5

    def _set(self, bid: bool, price: int, lots: int) -> None:
        book, prices = (self.bids, self.bid_prices) if bid else (self.asks, self.ask_prices)
        if lots == 0:
            if book.pop(price, None) is not None:
                del prices[bisect.bisect_left(prices, price)]
        else:
            if price not in book:
                bisect.insort(prices, price)
            book[price] = lots

    def _existing(self, bid: bool) -> int:
        prices = self.bid_prices if bid else self.ask_prices
        index = min(len(prices) - 1, int(self.rng.expovariate(0.2)))  # mostly near the top
        return prices[-1 - index] if bid else prices[index]

    def _new_price(self, bid: bool) -> int:
        if bid:
            best_ask = self.ask_prices[0] if self.ask_prices else None
            top = self.bid_prices[-1] if self.bid_prices else (best_ask or 1_000_000) - 1
            price = top + self.rng.randint(-30, 1)
            if best_ask is not None and price >= best_ask:
                price = best_ask - 1
            return max(1, price)
        best_bid = self.bid_prices[-1] if self.bid_prices else None
        top = self.ask_prices[0] if self.ask_prices else (best_bid or 1_000_000) + 1
        price = top + self.rng.randint(-1, 30)
        if best_bid is not None and price <= best_bid:
            price = best_bid + 1
        return price

    def _edit(self) -> tuple[bool, int, int]:
        bid = self.rng.random() < 0.5
        size = len(self.bids if bid else self.asks)
        draw = self.rng.random()
        if size == 0 or size < self.levels * 0.9 or draw < 0.25:
            price = self._new_price(bid)
            return bid, price, self._lots()
        if size > self.levels * 1.1:
            prices = self.bid_prices if bid else self.ask_prices
            return bid, prices[0] if bid else prices[-1], 0  # the deepest level goes
        if draw < 0.45 and size > self.levels * 0.8:
            return bid, self._existing(bid), 0
        return bid, self._existing(bid), self._lots()

    def step(self, ids: int | None = None, exclude: DepthFeed | None = None) -> _Change:
        """Change 1-3 levels at random, consuming ``ids`` update ids (default 1..4)."""
        count = ids if ids is not None else 1 + self.rng.randint(0, 3)
        if self.hidden_ids and ids is None:  # ids consumed by changes no depth event shows
            self.last_update_id += self.rng.randint(0, self.hidden_ids)
        change = _Change(self.last_update_id + 1, self.last_update_id + count, {}, {}, {}, {})
        for _ in range(self.rng.randint(1, 3)):
            bid, price, lots = self._edit()
            book = self.bids if bid else self.asks
            (change.old_bids if bid else change.old_asks).setdefault(price, book.get(price, 0))
            (change.bids if bid else change.asks)[price] = lots
            self._set(bid, price, lots)
        self.last_update_id = change.last_id
        self.history.append(change)
        for feed in self.feeds:
            if feed is not exclude:
                feed.on_change(change)
        return change

    # -- reading -----------------------------------------------------------------------------

    def state_at(self, update_id: int | None = None) -> tuple[int, dict[int, int], dict[int, int]]:
        """``(last_update_id, bids, asks)`` as after the last change with ``u <= update_id``
        (the oldest state the history reaches, if ``update_id`` is older than that)."""
        if update_id is None or update_id >= self.last_update_id:
            return self.last_update_id, dict(self.bids), dict(self.asks)
        bids, asks, last = dict(self.bids), dict(self.asks), self.last_update_id
        for change in reversed(self.history):
            if change.last_id <= update_id:
                break
            for book, old in ((bids, change.old_bids), (asks, change.old_asks)):
                for price, lots in old.items():
                    if lots:
                        book[price] = lots
                    else:
                        book.pop(price, None)
            last = change.first_id - 1
        return last, bids, asks

    def snapshot(self, update_id: int | None = None) -> TrueBook:
        last, bids, asks = self.state_at(update_id)
        return TrueBook(
            self.symbol,
            last,
            tuple(
                (Decimal(price_str(p)), Decimal(qty_str(bids[p])))
                for p in sorted(bids, reverse=True)
            ),
            tuple((Decimal(price_str(p)), Decimal(qty_str(asks[p]))) for p in sorted(asks)),
        )

    def depth_answer(self, limit: int, update_id: int | None = None) -> dict[str, Any]:
        """The REST ``/api/v3/depth`` body: the top ``limit`` levels per side."""
        if update_id is None:
            last = self.last_update_id
            bid_prices = self.bid_prices[: -limit - 1 : -1]
            ask_prices = self.ask_prices[:limit]
            bids, asks = self.bids, self.asks
        else:
            last, bids, asks = self.state_at(update_id)
            bid_prices = sorted(bids, reverse=True)[:limit]
            ask_prices = sorted(asks)[:limit]
        return {
            "lastUpdateId": last,
            "bids": [[price_str(p), qty_str(bids[p])] for p in bid_prices],
            "asks": [[price_str(p), qty_str(asks[p])] for p in ask_prices],
        }

    def top(self, levels: int) -> dict[str, Any]:
        """A partial-depth payload (``<symbol>@depth<N>``)."""
        return self.depth_answer(levels)


class DepthFeed:
    """``<symbol>@depth[@100ms]``: every change of the book since the previous event."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.number = book.last_update_id
        self._first: int | None = None
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._held: list[Any] = []  # events owed before a skipped range
        book.feeds.append(self)

    def on_change(self, change: _Change) -> None:
        if self._first is None:
            self._first = change.first_id
        self._bids.update(change.bids)
        self._asks.update(change.asks)
        self.number = change.last_id

    def _emit(self) -> dict[str, Any]:
        assert self._first is not None
        event = {
            "e": "depthUpdate",
            "E": int(time.time() * 1000),
            "s": self.book.symbol,
            "U": self._first,
            "u": self.number,
            "b": [[price_str(p), qty_str(self._bids[p])] for p in sorted(self._bids, reverse=True)],
            "a": [[price_str(p), qty_str(self._asks[p])] for p in sorted(self._asks)],
        }
        self._first = None
        self._bids, self._asks = {}, {}
        return event

    def next_payloads(self) -> list[Any]:
        self.book.step()
        out, self._held = [*self._held, self._emit()], []
        return out

    def skip(self, count: int) -> None:
        if self._first is not None:
            self._held.append(self._emit())
        self.number = self.book.step(ids=count, exclude=self).last_id


class PartialDepthFeed:
    """``<symbol>@depth<N>[@100ms]``: the top N levels after each change."""

    def __init__(self, book: OrderBook, levels: int) -> None:
        self.book = book
        self.levels = levels
        self.number = book.last_update_id

    def next_payloads(self) -> list[Any]:
        self.number = self.book.step().last_id
        return [self.book.top(self.levels)]

    def skip(self, count: int) -> None:
        self.number = self.book.step(ids=count).last_id
