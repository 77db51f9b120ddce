"""Typed market messages (``pip install 'wsmanager[typed]'``, msgspec).

``WSManager(typed=True)`` delivers these immutable objects instead of dicts for the documented
market payloads; ``subscribe(..., typed=True|False)`` chooses per subscription. See
``docs/typed.md`` for the field table.
"""

from __future__ import annotations

from .decoders import TYPED_KINDS, Decoder, decoder_for, stream_kind
from .messages import (
    AggTrade,
    BlockTrade,
    BookTicker,
    DepthUpdate,
    Kline,
    KlineBar,
    MarkPrice,
    MiniTicker,
    PartialDepth,
    ReferencePrice,
    Ticker,
    Trade,
)

__all__ = [
    "TYPED_KINDS",
    "AggTrade",
    "BlockTrade",
    "BookTicker",
    "Decoder",
    "DepthUpdate",
    "Kline",
    "KlineBar",
    "MarkPrice",
    "MiniTicker",
    "PartialDepth",
    "ReferencePrice",
    "Ticker",
    "Trade",
    "decoder_for",
    "stream_kind",
]
