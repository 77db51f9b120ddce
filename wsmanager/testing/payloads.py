"""Binance-shaped market-data payloads, and the per-stream feeds that number them.

A *feed* is the exchange's one sequence for one stream: every connection carrying the stream gets
the same messages. :func:`make_feed` picks the feed for a stream by its kind:

- ``trade``: ``t`` +1 per message;
- ``aggTrade``: ``a`` +1 per message, ``f``/``l`` the first/last trade ids, increasing without
  holes; the feed keeps the history the REST API serves (``/api/v3/aggTrades``);
- ``bookTicker``: ``u`` increasing by a random 1..5 (ordered, not contiguous);
- depth streams are fed by the true order book (:mod:`.book`);
- every other kind: a counter, with the payload shapes of :func:`make_payload`.

``skip(count)`` makes ``count`` numbers without sending them (they are part of the history).
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import Any, Protocol

__all__ = [
    "AGG_TRADE_HISTORY",
    "AggTradeFeed",
    "BookTickerFeed",
    "CounterFeed",
    "Feed",
    "TradeFeed",
    "make_payload",
    "stream_kind",
    "stream_symbol",
]

_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")
AGG_TRADE_HISTORY = 100_000  # aggregate trades kept per symbol for the REST API


class Feed(Protocol):
    """One stream's sequence at the exchange."""

    @property
    def number(self) -> int:
        """The last number made (sent or skipped); 0 before the first."""

    def next_payloads(self) -> list[Any]:
        """Make the next message (a list: a depth feed may owe an earlier one first)."""

    def skip(self, count: int) -> None:
        """Make ``count`` numbers that are never sent."""


def stream_kind(stream: str) -> str:
    """``btcusdt@kline_1m`` -> ``kline``; ``!ticker@arr`` -> ``!ticker@arr``."""
    if stream.startswith("!"):
        return stream
    kind = stream.split("@", 1)[1] if "@" in stream else stream
    kind = kind.split("@", 1)[0]  # depth@100ms -> depth
    if kind.startswith("kline_"):
        return "kline"
    if kind.startswith("depth") and kind[5:].isdigit():
        return "partial_depth"
    return kind


def stream_symbol(stream: str) -> str:
    """``btcusdt@trade`` -> ``BTCUSDT``."""
    return stream.split("@", 1)[0].upper()


def _now_ms() -> int:
    return int(time.time() * 1000)


def _price(rng: random.Random) -> str:
    return f"{rng.uniform(20_000, 70_000):.2f}"


def _qty(rng: random.Random) -> str:
    return f"{rng.uniform(0.0001, 2):.5f}"


class _PriceWalk:
    """Prices that wander a little from message to message, as Binance's strings."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.cents = rng.randint(2_000_000, 7_000_000)

    def price(self, above: int = 0) -> str:
        """The next price (``above`` cents over it: the other side of a spread)."""
        if not above:
            self.cents = max(1, self.cents + self.rng.randint(-50, 50))
        cents = self.cents + above
        return f"{cents // 100}.{cents % 100:02d}000000"

    def qty(self) -> str:
        lots = self.rng.randint(1, 200_000)  # 0.00001 .. 2
        return f"{lots // 100_000}.{lots % 100_000:05d}000"


class TradeFeed:
    """``<symbol>@trade``: ``t`` +1 each."""

    def __init__(self, stream: str, rng: random.Random) -> None:
        self.symbol = stream_symbol(stream)
        self.walk = _PriceWalk(rng)
        self.number = 0

    def next_payloads(self) -> list[Any]:
        self.number += 1
        now = _now_ms()
        return [
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
        ]

    def skip(self, count: int) -> None:
        self.number += count


class AggTradeFeed:
    """``<symbol>@aggTrade``: ``a`` +1 each, trade ids ``f``..``l`` without holes, a history."""

    def __init__(self, stream: str, rng: random.Random) -> None:
        self.symbol = stream_symbol(stream)
        self.walk = _PriceWalk(rng)
        self.number = 0
        self.last_trade_id = 0
        self.history: deque[dict[str, Any]] = deque(maxlen=AGG_TRADE_HISTORY)  # REST shape

    def _make(self) -> dict[str, Any]:
        self.number += 1
        first = self.last_trade_id + 1
        self.last_trade_id = first + self.walk.rng.randint(0, 2)
        trade = {
            "a": self.number,
            "p": self.walk.price(),
            "q": self.walk.qty(),
            "f": first,
            "l": self.last_trade_id,
            "T": _now_ms(),
            "m": self.walk.rng.random() < 0.5,
            "M": True,
        }
        self.history.append(trade)
        return trade

    def next_payloads(self) -> list[Any]:
        trade = self._make()
        return [{"e": "aggTrade", "E": trade["T"], "s": self.symbol, **trade}]

    def skip(self, count: int) -> None:
        for _ in range(count):
            self._make()

    def trades_from(self, from_id: int | None, limit: int) -> list[dict[str, Any]]:
        """REST ``aggTrades``: ``limit`` trades from id ``from_id`` (None: the most recent)."""
        if not self.history:
            return []
        if from_id is None:
            return list(self.history)[-limit:]
        start = max(0, from_id - self.history[0]["a"])
        return [self.history[i] for i in range(start, min(len(self.history), start + limit))]


class BookTickerFeed:
    """``<symbol>@bookTicker``: ``u`` increasing by a random 1..5 (ordered, not contiguous)."""

    def __init__(self, stream: str, rng: random.Random) -> None:
        self.symbol = stream_symbol(stream)
        self.walk = _PriceWalk(rng)
        self.number = 0

    def _advance(self) -> None:
        self.number += self.walk.rng.randint(1, 5)

    def next_payloads(self) -> list[Any]:
        self._advance()
        bid = self.walk.price()
        return [
            {
                "u": self.number,
                "s": self.symbol,
                "b": bid,
                "B": self.walk.qty(),
                "a": self.walk.price(above=self.walk.rng.randint(1, 10)),
                "A": self.walk.qty(),
            }
        ]

    def skip(self, count: int) -> None:
        for _ in range(count):
            self._advance()


class CounterFeed:
    """Every other kind: a counter numbering :func:`make_payload`'s shapes."""

    def __init__(self, stream: str, rng: random.Random) -> None:
        self.stream = stream
        self.rng = rng
        self.number = 0

    def next_payloads(self) -> list[Any]:
        self.number += 1
        return [make_payload(self.stream, self.number, self.rng)]

    def skip(self, count: int) -> None:
        self.number += count


def _ticker(symbol: str, now: int, rng: random.Random, mini: bool) -> dict[str, Any]:
    base = {
        "e": "24hrMiniTicker" if mini else "24hrTicker",
        "E": now,
        "s": symbol,
        "c": _price(rng),
        "o": _price(rng),
        "h": _price(rng),
        "l": _price(rng),
        "v": _qty(rng),
        "q": _qty(rng),
    }
    if not mini:
        base.update(
            {
                "p": f"{rng.uniform(-500, 500):.2f}",
                "P": f"{rng.uniform(-3, 3):.3f}",
                "w": _price(rng),
                "x": _price(rng),
                "Q": _qty(rng),
                "b": _price(rng),
                "B": _qty(rng),
                "a": _price(rng),
                "A": _qty(rng),
                "O": now - 86_400_000,
                "C": now,
                "F": 0,
                "L": 18150,
                "n": 18151,
            }
        )
    return base


def make_payload(stream: str, sequence: int, rng: random.Random | None = None) -> Any:
    """A payload shaped like Binance's for ``stream`` (no true sequences: see the feeds)."""
    rng = rng or random.Random(sequence)
    now = _now_ms()
    symbol = stream_symbol(stream)
    kind = stream_kind(stream)
    if kind == "kline":
        interval = stream.split("@", 1)[1].split("_", 1)[1]
        return {
            "e": "kline",
            "E": now,
            "s": symbol,
            "k": {
                "t": now - 60_000,
                "T": now - 1,
                "s": symbol,
                "i": interval,
                "f": sequence,
                "L": sequence + 10,
                "o": _price(rng),
                "c": _price(rng),
                "h": _price(rng),
                "l": _price(rng),
                "v": _qty(rng),
                "n": 10,
                "x": False,
                "q": _qty(rng),
                "V": _qty(rng),
                "Q": _qty(rng),
                "B": "0",
            },
        }
    if kind in ("ticker", "miniTicker"):
        return _ticker(symbol, now, rng, mini=kind == "miniTicker")
    if kind in ("!ticker@arr", "!miniTicker@arr"):
        mini = kind == "!miniTicker@arr"
        return [_ticker(s, now, rng, mini) for s in _SYMBOLS]
    return {"e": kind, "E": now, "s": symbol, "seq": sequence}
