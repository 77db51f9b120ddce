"""The fake exchange's past: a deterministic history of aggregate trades (and the klines made
from them) leading up to the moment the exchange started, so the archive and REST history it
serves meet its live streams without a gap.

Trade ``i`` (ids from 0) happens at ``origin + i * interval`` plus a jitter below ``interval``;
its price, quantity, side and trade ids are functions of ``i`` and the seed, so any day or page is
made on demand, in any order, identically every time. The live ``@aggTrade`` feed continues at
:attr:`SyntheticPast.live_from` (the first id at or after :attr:`SyntheticPast.present`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from ..history.streams import INTERVAL_MS as HISTORY_INTERVAL_MS

__all__ = [
    "INTERVAL_MS",
    "MICROSECONDS_SINCE",
    "PastSpec",
    "PastTrade",
    "Pasts",
    "SyntheticPast",
    "candle",
    "kline_row",
]

DAY_MS = 86_400_000
MICROSECONDS_SINCE = 1_735_689_600_000  # 2025-01-01: spot archives use microseconds from here
# the archive's intervals the fake serves: up to a day (3d and 1w come from REST only)
INTERVAL_MS = {name: ms for name, ms in HISTORY_INTERVAL_MS.items() if ms <= DAY_MS}
_MASK = (1 << 64) - 1

# (a, price cents, qty in 1e-5 lots, first trade id, last trade id, time in µs, buyer is maker)
PastTrade = tuple[int, int, int, int, int, int, bool]


def _mix(x: int) -> int:
    """splitmix64: a well-spread 64-bit hash of ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _day_start(ms: int) -> int:
    return ms - ms % DAY_MS


@dataclass(frozen=True)
class PastSpec:
    """What the past looks like: it starts at ``start`` (default: 00:00 UTC three days before
    the exchange starts) with one aggregate trade every ``trade_interval_ms``; the archive
    publishes a day ``lag_days`` after it ends (the latest day is missing, as on Binance)."""

    start: datetime | None = None
    trade_interval_ms: int = 1000
    lag_days: int = 1
    days: int = 3  # when start is None

    def __post_init__(self) -> None:
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("PastSpec.start must be an aware datetime (tzinfo=timezone.utc)")
        for name in ("trade_interval_ms", "days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PastSpec.{name} must be an int >= 1, got {value!r}")
        if isinstance(self.lag_days, bool) or not isinstance(self.lag_days, int):
            raise ValueError(f"PastSpec.lag_days must be an int >= 0, got {self.lag_days!r}")


@dataclass
class SyntheticPast:
    """One symbol's past (immutable once made; safe from any thread)."""

    symbol: str
    seed: str
    spec: PastSpec
    present: int = field(default_factory=lambda: int(time.time() * 1000))  # ms

    def __post_init__(self) -> None:
        start = self.spec.start
        origin = (
            int(start.timestamp() * 1000)
            if start is not None
            else _day_start(self.present) - self.spec.days * DAY_MS
        )
        if origin >= self.present:
            raise ValueError("the past must start before the exchange does")
        self.origin_us = origin * 1000
        self.step_us = self.spec.trade_interval_ms * 1000
        self._salt = _mix(int.from_bytes(self.seed.encode()[:8].ljust(8, b"\0"), "big"))
        self.base_cents = 2_000_000 + self._salt % 5_000_000
        self.live_from = self.first_id_at(self.present * 1000)  # the live feed's first id

    # -- trades ----------------------------------------------------------------------------------

    def trade(self, i: int) -> PastTrade:
        h = _mix(i ^ self._salt)
        cents = (
            self.base_cents
            + int(3000 * math.sin(i / 5003))
            + int(700 * math.sin(i / 377))
            + (h & 63)
            - 32
        )
        lots = 1 + (h >> 8) % 200_000
        first = i + 3 * (i // 3) + (1 if i % 3 == 2 else 0)
        at = self.origin_us + i * self.step_us + (h >> 32) % self.step_us
        return (i, cents, lots, first, first + i % 3, at, bool(h >> 63))

    def time_us(self, i: int) -> int:
        h = _mix(i ^ self._salt)
        return self.origin_us + i * self.step_us + (h >> 32) % self.step_us

    def first_id_at(self, at_us: int) -> int:
        """The first id whose time is at or after ``at_us`` (may be :attr:`live_from`)."""
        if at_us <= self.origin_us:
            return 0
        candidate = (at_us - self.origin_us) // self.step_us
        return candidate if self.time_us(candidate) >= at_us else candidate + 1

    def ids_between(self, start_us: int, end_us: int) -> range:
        """The past ids with a time in ``[start_us, end_us)``."""
        end = min(self.first_id_at(end_us), self.live_from)
        return range(min(self.first_id_at(start_us), end), end)

    def trades(self, ids: Iterable[int]) -> Iterator[PastTrade]:
        return (self.trade(i) for i in ids)

    def last_trade_id(self) -> int:
        """The last trade id of the past (the live feed's trade ids continue after it)."""
        return self.trade(self.live_from - 1)[4] if self.live_from else 0

    # -- the archive -----------------------------------------------------------------------------

    def day_published(self, day_ms: int, now_ms: int | None = None) -> bool:
        """Whether the archive has the daily file of the UTC day starting at ``day_ms``."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        latest = _day_start(now_ms) - (1 + self.spec.lag_days) * DAY_MS
        return self.origin_us // 1000 <= day_ms + DAY_MS - 1 and day_ms <= latest

    def agg_trades_csv(self, start_ms: int, end_ms: int) -> bytes:
        """The archive's ``aggTrades`` CSV of ``[start_ms, end_ms)`` (µs from 2025)."""
        micro = start_ms >= MICROSECONDS_SINCE
        lines = []
        for a, cents, lots, first, last, at, maker in self.trades(
            self.ids_between(start_ms * 1000, end_ms * 1000)
        ):
            stamp = at if micro else at // 1000
            lines.append(f"{a},{_price(cents)},{_qty(lots)},{first},{last},{stamp},{maker},True\n")
        return "".join(lines).encode()

    def klines_csv(self, interval: str, start_ms: int, end_ms: int) -> bytes:
        """The archive's ``klines`` CSV of the candles opening in ``[start_ms, end_ms)``."""
        micro = start_ms >= MICROSECONDS_SINCE
        scale = 1000 if micro else 1
        length = INTERVAL_MS[interval]
        lines = []
        for t in range(start_ms, end_ms, length):
            row = self.kline(interval, t, ())
            if row is None:
                continue
            row[0], row[6] = t * scale, (t + length) * scale - 1
            row[11] = "0"
            lines.append(",".join(str(v) for v in row) + "\n")
        return "".join(lines).encode()

    # -- klines ----------------------------------------------------------------------------------

    def kline(
        self, interval: str, open_ms: int, live: Iterable[dict[str, Any]]
    ) -> list[Any] | None:
        """The REST row of the candle opening at ``open_ms`` (past trades plus the ``live``
        ones in it, REST-shaped); None before the past begins."""
        length = INTERVAL_MS[interval]
        close_ms = open_ms + length
        if close_ms * 1000 <= self.origin_us:
            return None
        past = [
            (cents, lots, first, last, maker)
            for _a, cents, lots, first, last, _at, maker in self.trades(
                self.ids_between(open_ms * 1000, close_ms * 1000)
            )
        ]
        for trade in live:
            if open_ms <= trade["T"] < close_ms:
                past.append(
                    (_cents(trade["p"]), _lots(trade["q"]), trade["f"], trade["l"], trade["m"])
                )
        if past:
            return candle(open_ms, length, past)
        previous = self.first_id_at(open_ms * 1000) - 1
        close = self.trade(previous)[1] if previous >= 0 else self.base_cents
        return candle(open_ms, length, [], close)


def candle(
    open_ms: int,
    length: int,
    trades: list[tuple[int, int, int, int, bool]],
    empty_price: int = 0,
) -> list[Any]:
    """A REST kline row from ``(cents, lots, first, last, buyer_is_maker)`` trades, exact."""
    if not trades:
        price = _price(empty_price)
        zero = "0.00000000"
        return [open_ms, price, price, price, price, zero, open_ms + length - 1, zero, 0, zero,
                zero, "0"]  # fmt: skip
    prices = [t[0] for t in trades]
    volume = sum(t[1] for t in trades)
    quote = sum(t[0] * t[1] for t in trades)  # 1e-7
    taker = [t for t in trades if not t[4]]
    return [
        open_ms,
        _price(prices[0]),
        _price(max(prices)),
        _price(min(prices)),
        _price(prices[-1]),
        _qty(volume),
        open_ms + length - 1,
        _fixed(quote, 7),
        sum(t[3] - t[2] + 1 for t in trades),
        _qty(sum(t[1] for t in taker)),
        _fixed(sum(t[0] * t[1] for t in taker), 7),
        "0",
    ]


def kline_row(row: list[Any], symbol: str, interval: str, closed: bool, now: int) -> Any:
    """A REST kline row as the live ``@kline_<interval>`` stream sends it."""
    return {
        "e": "kline",
        "E": now,
        "s": symbol,
        "k": {
            "t": row[0],
            "T": row[6],
            "s": symbol,
            "i": interval,
            "f": -1,
            "L": -1,
            "o": row[1],
            "c": row[4],
            "h": row[2],
            "l": row[3],
            "v": row[5],
            "n": row[8],
            "x": closed,
            "q": row[7],
            "V": row[9],
            "Q": row[10],
            "B": "0",
        },
    }


def _fixed(number: int, places: int) -> str:
    """``number`` * 10**-places with 8 decimals, exactly."""
    scaled = number * 10 ** (8 - places)
    return f"{scaled // 10**8}.{scaled % 10**8:08d}"


def _price(cents: int) -> str:
    return _fixed(cents, 2)


def _qty(lots: int) -> str:
    return _fixed(lots, 5)


def _cents(price: str) -> int:
    whole, _, frac = price.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _lots(qty: str) -> int:
    whole, _, frac = qty.partition(".")
    return int(whole) * 100_000 + int((frac + "00000")[:5])


def utc_day(ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=_day_start(ms))


class Pasts:
    """The past of every symbol of one exchange, made on first use (thread-safe)."""

    def __init__(self, seed: int, spec: PastSpec, present: int | None = None) -> None:
        self.seed = seed
        self.spec = spec
        self.present = int(time.time() * 1000) if present is None else present
        self._lock = threading.Lock()  # guards _pasts
        self._pasts: dict[str, SyntheticPast] = {}

    def of(self, symbol: str) -> SyntheticPast:
        symbol = symbol.upper()
        with self._lock:
            past = self._pasts.get(symbol)
            if past is None:
                past = self._pasts[symbol] = SyntheticPast(
                    symbol, f"{self.seed}:{symbol}", self.spec, self.present
                )
            return past
