"""Decoding one binary SBE frame into the JSON-shaped dicts of the JSON streams.

:func:`decode_frame` checks the message header (schema id and version on every frame), then reads
the template's root block with one precompiled :class:`struct.Struct`, each group row with one
``unpack_from`` (honouring the block lengths the frame declares, as SBE requires), and the trailing
``symbol``. It returns ``[(stream, payload), ...]``: one trade dict per trade of the event, one
dict for the other templates. Prices and quantities become decimal strings exactly as mantissa and
exponent say (:func:`decimal_string`); times stay in microseconds.

Errors: :class:`UnsupportedFrameError` for a schema, version or template this decoder does not
know; :class:`SbeDecodeError` (its base, a ``ValueError``) for a frame that is truncated or
otherwise malformed. Callers count both as invalid frames.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from . import schema as s

__all__ = [
    "SbeDecodeError",
    "UnsupportedFrameError",
    "decimal_string",
    "decode_frame",
]

Decoded = list[tuple[str, dict[str, Any]]]


class SbeDecodeError(ValueError):
    """A binary frame that is not a valid SBE market-data message (truncated, malformed)."""


class UnsupportedFrameError(SbeDecodeError):
    """A well-formed header naming a schema, version or template this decoder does not support."""


def decimal_string(mantissa: int, exponent: int) -> str:
    """``mantissa * 10**exponent`` as a decimal string with exactly ``-exponent`` decimals
    (``2666124000000, -8`` -> ``"26661.24000000"``; ``-5, -3`` -> ``"-0.005"``; ``7, 2`` ->
    ``"700"``)."""
    formatter = _FORMATTERS.get(exponent)  # every int8; another exponent: made now
    return (formatter or _formatter(exponent))(mantissa)


def _formatter(exponent: int) -> Callable[[int], str]:
    """The decimal string of a mantissa at one exponent (the pattern and scale precomputed:
    ``"%d.%08d" % divmod(m, 10**8)`` is the fastest pure-Python way we measured)."""
    if exponent >= 0:
        factor: int = 10**exponent
        return lambda mantissa: str(mantissa * factor)
    pattern = f"%d.%0{-exponent}d"
    scale: int = 10**-exponent

    def fmt(mantissa: int) -> str:
        if mantissa >= 0:
            return pattern % divmod(mantissa, scale)
        return "-" + pattern % divmod(-mantissa, scale)

    return fmt


_FORMATTERS = {exponent: _formatter(exponent) for exponent in range(-128, 128)}  # int8


def _truncated(what: str) -> SbeDecodeError:
    return SbeDecodeError(f"truncated SBE frame: {what} runs past the end")


def _symbol(frame: bytes, offset: int) -> str:
    if offset >= len(frame):
        raise _truncated("symbol length")
    end = offset + 1 + frame[offset]
    if end > len(frame):
        raise _truncated("symbol")
    try:
        return frame[offset + 1 : end].decode("utf-8")
    except UnicodeDecodeError:
        raise SbeDecodeError("symbol is not UTF-8") from None


def _group(
    frame: bytes, offset: int, header: struct.Struct, row: struct.Struct
) -> tuple[int, int, int]:
    """``(stride, count, first row offset)`` of the group at ``offset``, checked to fit."""
    if offset + header.size > len(frame):
        raise _truncated("group header")
    stride, count = header.unpack_from(frame, offset)
    if stride < row.size:
        raise SbeDecodeError(f"group block length {stride} < {row.size}")
    start = offset + header.size
    if start + stride * count > len(frame):
        raise _truncated(f"group of {count} rows")
    return stride, count, start


def _levels(
    frame: bytes, offset: int, price: Callable[[int], str], qty: Callable[[int], str]
) -> tuple[list[list[str]], int]:
    stride, count, start = _group(frame, offset, s.GROUP16_HEADER, s.LEVEL_ROW)
    end = start + stride * count
    if stride == s.LEVEL_ROW.size:  # the schema's rows: one C loop over them
        rows: Iterable[tuple[int, int]] = s.LEVEL_ROW.iter_unpack(memoryview(frame)[start:end])
    else:  # longer rows (fields appended): one unpack_from per row
        unpack = s.LEVEL_ROW.unpack_from
        rows = (unpack(frame, row) for row in range(start, end, stride))
    return [[price(p), qty(q)] for p, q in rows], end


def _trades(frame: bytes, offset: int) -> Decoded:
    event_time, transact_time, price_exp, qty_exp = s.TRADES_BLOCK.unpack_from(
        frame, s.MESSAGE_HEADER.size
    )
    price, qty = _FORMATTERS[price_exp], _FORMATTERS[qty_exp]
    stride, count, start = _group(frame, offset, s.GROUP_HEADER, s.TRADE_ROW)
    end = start + stride * count
    symbol = _symbol(frame, end)
    stream = symbol.lower() + "@trade"
    rows: Iterable[tuple[int, int, int, int]]
    if stride == s.TRADE_ROW.size:  # the schema's rows: one C loop over them
        rows = s.TRADE_ROW.iter_unpack(memoryview(frame)[start:end])
    else:  # longer rows (fields appended): one unpack_from per row
        unpack = s.TRADE_ROW.unpack_from
        rows = (unpack(frame, row) for row in range(start, end, stride))
    return [
        (
            stream,
            {
                "e": "trade",
                "E": event_time,
                "s": symbol,
                "t": trade_id,
                "p": price(p),
                "q": qty(q),
                "T": transact_time,
                "m": maker == 1,
                "M": True,  # isBestMatch: presence="constant", True
            },
        )
        for trade_id, p, q, maker in rows
    ]


def _best_bid_ask(frame: bytes, offset: int) -> Decoded:
    event_time, update_id, price_exp, qty_exp, bid, bid_qty, ask, ask_qty = (
        s.BEST_BID_ASK_BLOCK.unpack_from(frame, s.MESSAGE_HEADER.size)
    )
    price, qty = _FORMATTERS[price_exp], _FORMATTERS[qty_exp]
    symbol = _symbol(frame, offset)
    payload = {
        "e": "bestBidAsk",
        "E": event_time,
        "u": update_id,
        "s": symbol,
        "b": price(bid),
        "B": qty(bid_qty),
        "a": price(ask),
        "A": qty(ask_qty),
    }
    return [(symbol.lower() + "@bestBidAsk", payload)]


def _depth_snapshot(frame: bytes, offset: int) -> Decoded:
    event_time, update_id, price_exp, qty_exp = s.DEPTH_SNAPSHOT_BLOCK.unpack_from(
        frame, s.MESSAGE_HEADER.size
    )
    price, qty = _FORMATTERS[price_exp], _FORMATTERS[qty_exp]
    bids, offset = _levels(frame, offset, price, qty)
    asks, offset = _levels(frame, offset, price, qty)
    symbol = _symbol(frame, offset)
    payload = {
        "e": "depth20",
        "E": event_time,
        "s": symbol,
        "lastUpdateId": update_id,
        "bids": bids,
        "asks": asks,
    }
    return [(symbol.lower() + "@depth20", payload)]


def _depth_diff(frame: bytes, offset: int) -> Decoded:
    event_time, first_id, last_id, price_exp, qty_exp = s.DEPTH_DIFF_BLOCK.unpack_from(
        frame, s.MESSAGE_HEADER.size
    )
    price, qty = _FORMATTERS[price_exp], _FORMATTERS[qty_exp]
    bids, offset = _levels(frame, offset, price, qty)
    asks, offset = _levels(frame, offset, price, qty)
    symbol = _symbol(frame, offset)
    payload = {
        "e": "depthUpdate",
        "E": event_time,
        "s": symbol,
        "U": first_id,
        "u": last_id,
        "b": bids,
        "a": asks,
    }
    return [(symbol.lower() + "@depth", payload)]


# template id -> (decoder, root block size)
_TEMPLATES: dict[int, tuple[Callable[[bytes, int], Decoded], int]] = {
    s.TRADES: (_trades, s.TRADES_BLOCK.size),
    s.BEST_BID_ASK: (_best_bid_ask, s.BEST_BID_ASK_BLOCK.size),
    s.DEPTH_SNAPSHOT: (_depth_snapshot, s.DEPTH_SNAPSHOT_BLOCK.size),
    s.DEPTH_DIFF: (_depth_diff, s.DEPTH_DIFF_BLOCK.size),
}


def decode_frame(frame: bytes) -> Decoded:
    """Decode one binary frame into ``[(stream, payload), ...]`` (streams as
    ``<symbol lowercased>@trade|@bestBidAsk|@depth|@depth20``).

    Raises :class:`UnsupportedFrameError` for an unknown schema id, version or template and
    :class:`SbeDecodeError` for a truncated or malformed frame."""
    header = s.MESSAGE_HEADER
    if len(frame) < header.size:
        raise _truncated("message header")
    block_length, template, schema_id, version = header.unpack_from(frame, 0)
    if schema_id != s.SCHEMA_ID or version != s.SCHEMA_VERSION:
        raise UnsupportedFrameError(
            f"SBE schema {schema_id} version {version} (supported: schema {s.SCHEMA_ID} "
            f"version {s.SCHEMA_VERSION})"
        )
    entry = _TEMPLATES.get(template)
    if entry is None:
        raise UnsupportedFrameError(f"unknown SBE template id {template}")
    decoder, root_size = entry
    if block_length < root_size:
        raise SbeDecodeError(f"block length {block_length} < {root_size} for template {template}")
    offset = header.size + block_length
    if offset > len(frame):
        raise _truncated("root block")
    try:
        return decoder(frame, offset)
    except struct.error as exc:  # not reached: every length is checked first; kept as a net
        raise SbeDecodeError(f"malformed SBE frame: {exc}") from None
