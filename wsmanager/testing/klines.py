"""History at the fake exchange, consistent with its past (:mod:`.past`) and its live trades:
the REST answers of ``/api/v3/aggTrades`` and ``/api/v3/klines``, and the live
``<symbol>@kline_<interval>`` feed (each message the current candle, made from the same trades;
a candle that ended is sent once more, closed, before the next one).
"""

from __future__ import annotations

import time
from typing import Any

from .past import INTERVAL_MS, PastTrade, SyntheticPast, _price, _qty, kline_row
from .payloads import AggTradeFeed, stream_symbol

__all__ = [
    "KLINES_LIMIT_MAX",
    "KlineFeed",
    "agg_trades_answer",
    "klines_answer",
    "rest_trade",
    "start_live_after",
]

KLINES_LIMIT_MAX = 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def rest_trade(trade: PastTrade) -> dict[str, Any]:
    """A past trade as ``/api/v3/aggTrades`` answers it."""
    a, cents, lots, first, last, at, maker = trade
    return {
        "a": a,
        "p": _price(cents),
        "q": _qty(lots),
        "f": first,
        "l": last,
        "T": at // 1000,
        "m": maker,
        "M": True,
    }


def start_live_after(feed: AggTradeFeed, past: SyntheticPast) -> None:
    """Number the live feed on from the past: its next ``a`` is ``past.live_from``."""
    feed.number = past.live_from - 1
    feed.last_trade_id = past.last_trade_id()


def agg_trades_answer(
    past: SyntheticPast,
    feed: AggTradeFeed,
    from_id: int | None,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[dict[str, Any]]:
    """``GET /api/v3/aggTrades`` over the past and the live trades, as Binance answers it."""
    if from_id is None and start is None and end is None:
        recent = list(feed.history)[-limit:]
        missing = limit - len(recent)
        if missing > 0:
            ids = range(max(0, past.live_from - missing), past.live_from)
            recent = [rest_trade(t) for t in past.trades(ids)] + recent
        return recent
    first = from_id if from_id is not None else past.first_id_at((start or 0) * 1000)
    found: list[dict[str, Any]] = []
    for i in range(first, min(past.live_from, first + limit)):
        found.append(rest_trade(past.trade(i)))
    if len(found) < limit:
        found += feed.trades_from(max(first, past.live_from), limit - len(found))
    return [
        t for t in found if (start is None or t["T"] >= start) and (end is None or t["T"] <= end)
    ][:limit]


def klines_answer(
    past: SyntheticPast,
    feed: AggTradeFeed,
    interval: str,
    start: int | None,
    end: int | None,
    limit: int,
) -> list[list[Any]]:
    """``GET /api/v3/klines``: candles by open time, up to the current (open) one."""
    length = INTERVAL_MS[interval]
    current = _now_ms() // length * length
    last = current if end is None else min(current, end // length * length)
    if start is not None:
        first = -(-start // length) * length
        opens = range(first, min(last, first + (limit - 1) * length) + 1, length)
    else:
        opens = range(max(0, last - (limit - 1) * length), last + 1, length)
    live = list(feed.history)
    rows = []
    for t in opens:
        row = past.kline(interval, t, live if t + length > past.present else ())
        if row is not None:
            rows.append(row)
    return rows


class KlineFeed:
    """``<symbol>@kline_<interval>``: the current candle, from the market's own trades."""

    def __init__(self, stream: str, past: SyntheticPast, trades: AggTradeFeed) -> None:
        self.symbol = stream_symbol(stream)
        self.interval = stream.split("@", 1)[1].split("_", 1)[1]
        if self.interval not in INTERVAL_MS:
            raise ValueError(f"the fake exchange has no {self.interval} klines")
        self.length = INTERVAL_MS[self.interval]
        self.past = past
        self.trades = trades
        self.number = 0
        self.open_ms: int | None = None

    def _message(self, open_ms: int, closed: bool, now: int) -> Any:
        live = list(self.trades.history) if open_ms + self.length > self.past.present else []
        row = self.past.kline(self.interval, open_ms, live)
        assert row is not None
        return kline_row(row, self.symbol, self.interval, closed, now)

    def next_payloads(self) -> list[Any]:
        self.number += 1
        now = _now_ms()
        current = now // self.length * self.length
        payloads = []
        if self.open_ms is not None and self.open_ms < current:
            payloads.append(self._message(self.open_ms, True, now))
        self.open_ms = current
        payloads.append(self._message(current, False, now))
        return payloads

    def skip(self, count: int) -> None:
        self.number += count
