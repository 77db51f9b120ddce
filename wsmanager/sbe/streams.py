"""Which streams the exchange serves in SBE, and what an order book reads there (pure)."""

from __future__ import annotations

__all__ = ["SBE_STREAM_KINDS", "book_speed", "is_sbe_stream"]

# <symbol>@trade, @bestBidAsk, @depth (diff depth, 20 ms) and @depth20 (top 20 levels, 50 ms)
SBE_STREAM_KINDS = ("trade", "bestBidAsk", "depth", "depth20")


def is_sbe_stream(stream: str) -> bool:
    """True for ``<symbol>@trade|@bestBidAsk|@depth|@depth20`` (no update speed suffix)."""
    symbol, at, kind = stream.partition("@")
    return bool(symbol) and bool(at) and kind in SBE_STREAM_KINDS


def book_speed(encoding: str, speed: str | None) -> str:
    """The diff-depth speed of an order book: ``speed``, or the encoding's default (JSON:
    ``"100ms"``; SBE: ``"20ms"``, its only diff-depth stream, ``<symbol>@depth``).
    ``ValueError`` for a speed the encoding's streams do not have."""
    if encoding == "sbe":
        if speed not in (None, "20ms"):
            raise ValueError(
                f"the SBE streams have one diff depth stream, every 20 ms: speed='20ms' "
                f"(or None), not {speed!r}"
            )
        return "20ms"
    if speed == "20ms":
        raise ValueError("speed='20ms' is the SBE streams' (encoding='sbe', endpoint='spot-sbe')")
    return "100ms" if speed is None else speed
