"""The typed decoder of a stream: chosen by the stream's kind, run on the frame's bytes.

:func:`decoder_for` returns a function ``decode(frame, enveloped)`` for a stream whose payloads
have a typed class, else ``None``. It decodes straight from the frame's bytes with msgspec (no
dict in between); for a combined stream's envelope it first decodes ``{"data": Raw}`` (the
payload's bytes, unparsed) and then the payload. It returns ``None`` for a payload that is not
the documented shape or whose event type is another (an unknown event): that one is delivered
as the dict it also is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from .messages import (
    AggTrade,
    BlockTrade,
    BookTicker,
    DepthUpdate,
    Kline,
    MarkPrice,
    MiniTicker,
    PartialDepth,
    ReferencePrice,
    Ticker,
    Trade,
)

__all__ = ["TYPED_KINDS", "Decoder", "decoder_for", "stream_kind"]

Decoder = Callable[[bytes, bool], Any]

# kind -> (class, the event types it accepts; None: any, the payload has no fixed one)
TYPED_KINDS: dict[str, tuple[type[Any], frozenset[str] | None]] = {
    "trade": (Trade, frozenset({"trade"})),
    "aggTrade": (AggTrade, frozenset({"aggTrade"})),
    "depth": (DepthUpdate, frozenset({"depthUpdate"})),
    "partial_depth": (PartialDepth, None),
    "bookTicker": (BookTicker, None),
    "kline": (Kline, frozenset({"kline"})),
    "ticker": (Ticker, frozenset({"24hrTicker"})),
    "miniTicker": (MiniTicker, frozenset({"24hrMiniTicker"})),
    "markPrice": (MarkPrice, frozenset({"markPriceUpdate"})),
    "referencePrice": (ReferencePrice, None),
    "blockTrade": (BlockTrade, None),
}


class _Envelope(msgspec.Struct):
    data: msgspec.Raw


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
_decoders: dict[str, Decoder | None] = {}


def stream_kind(stream: str) -> str:
    """``btcusdt@kline_1m`` -> ``kline``; ``btcusdt@depth20@100ms`` -> ``partial_depth``."""
    if stream.startswith("!") or "@" not in stream:
        return stream
    kind = stream.split("@", 2)[1]
    if kind.startswith("kline_"):
        return "kline"
    if kind.startswith("depth") and kind[5:].isdigit():
        return "partial_depth"
    return kind


def decoder_for(stream: str) -> Decoder | None:
    """The typed decoder of ``stream``'s payloads, or None (its payloads stay dicts)."""
    kind = stream_kind(stream)
    if kind not in _decoders:
        _decoders[kind] = _make(kind)
    return _decoders[kind]


def _make(kind: str) -> Decoder | None:
    spec = TYPED_KINDS.get(kind)
    if spec is None:
        return None
    cls, events = spec
    payload = msgspec.json.Decoder(cls)
    if kind == "partial_depth":  # futures send these as depthUpdate events
        diff = msgspec.json.Decoder(DepthUpdate)

        def decode_partial(frame: bytes, enveloped: bool) -> Any:
            try:
                data = _ENVELOPE.decode(frame).data if enveloped else frame
                try:
                    return payload.decode(data)
                except msgspec.ValidationError:
                    return diff.decode(data)
            except _ERRORS:
                return None

        return decode_partial

    def decode(frame: bytes, enveloped: bool) -> Any:
        try:
            value = payload.decode(_ENVELOPE.decode(frame).data if enveloped else frame)
        except _ERRORS:
            return None
        if events is not None and value.event_type not in events:
            return None
        return value

    return decode
