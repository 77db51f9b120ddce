"""What an order book is called and what it reports: its depth stream's name, its metrics and
a consistent view of both sides (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .levels import Level

__all__ = ["MARKETS", "BookStats", "BookView", "depth_stream"]

_SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")
_SPEEDS = {"100ms": "@depth@100ms", "1000ms": "@depth", "20ms": "@depth"}  # 20ms: SBE's @depth
_FUTURES_SPEEDS = {"100ms": "@depth@100ms", "250ms": "@depth", "500ms": "@depth@500ms"}
MARKETS = ("spot", "usdm", "coinm")


def depth_stream(symbol: str, speed: str = "100ms", market: str = "spot") -> str:
    """The diff depth stream of ``symbol``: ``btcusdt@depth@100ms``, or ``btcusdt@depth``
    (speed ``"1000ms"`` on the JSON streams, ``"20ms"`` on the SBE streams; futures:
    ``"100ms"``, ``"250ms"`` (``@depth``) or ``"500ms"``)."""
    if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol):
        raise ValueError(f"symbol must be letters and digits like 'BTCUSDT', got {symbol!r}")
    if market not in MARKETS:
        raise ValueError(f"market must be one of {', '.join(MARKETS)}, got {market!r}")
    if market == "spot":
        if speed not in _SPEEDS:
            raise ValueError(f"speed must be '100ms', '1000ms' or '20ms' (SBE), got {speed!r}")
        return symbol.lower() + _SPEEDS[speed]
    if speed not in _FUTURES_SPEEDS:
        allowed = " or ".join(repr(s) for s in _FUTURES_SPEEDS)
        raise ValueError(f"speed must be {allowed} on {market}, got {speed!r}")
    return symbol.lower() + _FUTURES_SPEEDS[speed]


@dataclass(frozen=True)
class BookStats:
    """What an :class:`OrderBook` reports for metrics."""

    symbol: str
    synced: bool
    resyncs: int  # syncs after the first
    snapshot_requests: int  # REST snapshot requests sent
    last_update_id: int | None  # None while not synced
    levels: tuple[int, int]  # (bids, asks) held now
    seconds_since_update: float | None  # since the last applied event or sync; None before
    callback_errors: int = 0  # what on_update / on_error callbacks raised


@dataclass(frozen=True)
class BookView:
    """Both sides of a book read at one instant (one event is never half-visible)."""

    synced: bool
    last_update_id: int | None
    bids: list[Level]  # best (highest) first
    asks: list[Level]  # best (lowest) first
