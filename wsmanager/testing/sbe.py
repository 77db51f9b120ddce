"""An SBE encoder for the fake exchange and tests, written from ``stream_1_0.xml``.

The mirror image of :mod:`wsmanager.sbe`: the ``encode_*`` functions take the fields of one
message (mantissas as ints, exponents, times in microseconds) and return one binary frame;
:func:`encode_payloads` takes the JSON-shaped dicts the decoder returns (decimal strings) and
encodes them with the exponents given (exactly: a value the exponent cannot hold is a
``ValueError``). ``schema_id``, ``version`` and ``template`` may be overridden to make frames a
decoder must refuse.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from ..sbe import schema as s

__all__ = [
    "encode_best_bid_ask",
    "encode_depth_diff",
    "encode_depth_snapshot",
    "encode_header",
    "encode_payloads",
    "encode_trades",
    "to_mantissa",
]

Level = tuple[int, int]  # (price mantissa, quantity mantissa)


def to_mantissa(text: str, exponent: int) -> int:
    """The mantissa of ``text`` at ``exponent`` (``"26661.24", -8`` -> ``2666124000000``);
    ``ValueError`` if the exponent cannot hold the value exactly or it is out of int64."""
    value = Decimal(text).scaleb(-exponent)
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} does not fit exponent {exponent}")
    mantissa = int(value)
    if not -(2**63) <= mantissa < 2**63:
        raise ValueError(f"{text!r} at exponent {exponent} is out of int64")
    return mantissa


def encode_header(
    template: int,
    block_length: int,
    *,
    schema_id: int = s.SCHEMA_ID,
    version: int = s.SCHEMA_VERSION,
) -> bytes:
    """The 8-byte ``messageHeader``."""
    return s.MESSAGE_HEADER.pack(block_length, template, schema_id, version)


def _symbol(symbol: str) -> bytes:
    data = symbol.encode("utf-8")
    if len(data) > 255:
        raise ValueError("symbol longer than 255 bytes (varString8)")
    return s.VAR_STRING8_LENGTH.pack(len(data)) + data


def _group(header: struct.Struct, row: struct.Struct, rows: Sequence[tuple[Any, ...]]) -> bytes:
    return header.pack(row.size, len(rows)) + b"".join(row.pack(*r) for r in rows)


def encode_trades(
    *,
    event_time: int,
    transact_time: int,
    symbol: str,
    trades: Sequence[tuple[int, int, int, bool]],
    price_exponent: int = -8,
    qty_exponent: int = -8,
    template: int = s.TRADES,
    schema_id: int = s.SCHEMA_ID,
    version: int = s.SCHEMA_VERSION,
) -> bytes:
    """A ``TradesStreamEvent``: ``trades`` as ``(id, price, qty, is_buyer_maker)`` mantissas."""
    block = s.TRADES_BLOCK.pack(event_time, transact_time, price_exponent, qty_exponent)
    rows = [(t, p, q, 1 if m else 0) for t, p, q, m in trades]
    return (
        encode_header(template, len(block), schema_id=schema_id, version=version)
        + block
        + _group(s.GROUP_HEADER, s.TRADE_ROW, rows)
        + _symbol(symbol)
    )


def encode_best_bid_ask(
    *,
    event_time: int,
    update_id: int,
    symbol: str,
    bid: Level,
    ask: Level,
    price_exponent: int = -8,
    qty_exponent: int = -8,
) -> bytes:
    """A ``BestBidAskStreamEvent``."""
    block = s.BEST_BID_ASK_BLOCK.pack(
        event_time, update_id, price_exponent, qty_exponent, bid[0], bid[1], ask[0], ask[1]
    )
    return encode_header(s.BEST_BID_ASK, len(block)) + block + _symbol(symbol)


def encode_depth_snapshot(
    *,
    event_time: int,
    update_id: int,
    symbol: str,
    bids: Sequence[Level],
    asks: Sequence[Level],
    price_exponent: int = -8,
    qty_exponent: int = -8,
) -> bytes:
    """A ``DepthSnapshotStreamEvent`` (``<symbol>@depth20``)."""
    block = s.DEPTH_SNAPSHOT_BLOCK.pack(event_time, update_id, price_exponent, qty_exponent)
    return (
        encode_header(s.DEPTH_SNAPSHOT, len(block))
        + block
        + _group(s.GROUP16_HEADER, s.LEVEL_ROW, bids)
        + _group(s.GROUP16_HEADER, s.LEVEL_ROW, asks)
        + _symbol(symbol)
    )


def encode_depth_diff(
    *,
    event_time: int,
    first_update_id: int,
    last_update_id: int,
    symbol: str,
    bids: Sequence[Level],
    asks: Sequence[Level],
    price_exponent: int = -8,
    qty_exponent: int = -8,
) -> bytes:
    """A ``DepthDiffStreamEvent`` (``<symbol>@depth``)."""
    block = s.DEPTH_DIFF_BLOCK.pack(
        event_time, first_update_id, last_update_id, price_exponent, qty_exponent
    )
    return (
        encode_header(s.DEPTH_DIFF, len(block))
        + block
        + _group(s.GROUP16_HEADER, s.LEVEL_ROW, bids)
        + _group(s.GROUP16_HEADER, s.LEVEL_ROW, asks)
        + _symbol(symbol)
    )


def _levels(levels: Iterable[Sequence[str]], pe: int, qe: int) -> list[Level]:
    return [(to_mantissa(p, pe), to_mantissa(q, qe)) for p, q in levels]


def encode_payloads(
    payloads: Sequence[dict[str, Any]], *, price_exponent: int = -8, qty_exponent: int = -8
) -> bytes:
    """One frame from contract-shaped dicts (times in microseconds): the trade dicts of one
    event (same ``E``, ``T`` and ``s``), or one ``bestBidAsk``, ``depthUpdate`` or ``depth20``."""
    first = payloads[0]
    kind = first.get("e")
    pe, qe = price_exponent, qty_exponent
    if kind == "trade":
        return encode_trades(
            event_time=first["E"],
            transact_time=first["T"],
            symbol=first["s"],
            trades=[
                (t["t"], to_mantissa(t["p"], pe), to_mantissa(t["q"], qe), bool(t["m"]))
                for t in payloads
            ],
            price_exponent=pe,
            qty_exponent=qe,
        )
    if len(payloads) != 1:
        raise ValueError(f"one {kind!r} payload per frame")
    if kind == "bestBidAsk":
        return encode_best_bid_ask(
            event_time=first["E"],
            update_id=first["u"],
            symbol=first["s"],
            bid=(to_mantissa(first["b"], pe), to_mantissa(first["B"], qe)),
            ask=(to_mantissa(first["a"], pe), to_mantissa(first["A"], qe)),
            price_exponent=pe,
            qty_exponent=qe,
        )
    if kind == "depthUpdate":
        return encode_depth_diff(
            event_time=first["E"],
            first_update_id=first["U"],
            last_update_id=first["u"],
            symbol=first["s"],
            bids=_levels(first["b"], pe, qe),
            asks=_levels(first["a"], pe, qe),
            price_exponent=pe,
            qty_exponent=qe,
        )
    if kind == "depth20":
        return encode_depth_snapshot(
            event_time=first["E"],
            update_id=first["lastUpdateId"],
            symbol=first["s"],
            bids=_levels(first["bids"], pe, qe),
            asks=_levels(first["asks"], pe, qe),
            price_exponent=pe,
            qty_exponent=qe,
        )
    raise ValueError(f"no SBE template for event type {kind!r}")
