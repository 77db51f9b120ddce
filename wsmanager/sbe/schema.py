"""Binance's spot market-data SBE schema, ``sbe/schemas/stream_1_0.xml``, as constants.

Written from the schema in ``binance/binance-spot-api-docs`` (``package="spot_stream" id="1"
version="0" semanticVersion="5.2" byteOrder="littleEndian"``). Every frame starts with the
``messageHeader`` composite; a message's root block follows, then its repeating groups (each with
its own dimension header), then its variable-length ``symbol`` (``varString8``).

Field layouts (offsets within the root block; ``<`` little-endian):

- ``TradesStreamEvent`` (10000): ``eventTime`` int64, ``transactTime`` int64, ``priceExponent``
  int8, ``qtyExponent`` int8; group ``trades`` (``groupSizeEncoding``: uint16 blockLength, uint32
  numInGroup) of ``id`` int64, ``price`` int64, ``qty`` int64, ``isBuyerMaker`` uint8
  (``isBestMatch`` has ``presence="constant"`` ``True``: not on the wire).
- ``BestBidAskStreamEvent`` (10001): ``eventTime`` int64, ``bookUpdateId`` int64, the two
  exponents, ``bidPrice bidQty askPrice askQty`` int64; no group.
- ``DepthSnapshotStreamEvent`` (10002): ``eventTime`` int64, ``bookUpdateId`` int64, the two
  exponents; groups ``bids`` and ``asks`` (``groupSize16Encoding``: uint16 blockLength, uint16
  numInGroup) of ``price qty`` int64.
- ``DepthDiffStreamEvent`` (10003): ``eventTime`` int64, ``firstBookUpdateId`` int64,
  ``lastBookUpdateId`` int64, the two exponents; groups ``bids`` and ``asks`` as 10002.

Times are microseconds since the epoch (``utcTimestampUs``).
"""

from __future__ import annotations

import struct

__all__ = [
    "BEST_BID_ASK",
    "BEST_BID_ASK_BLOCK",
    "BYTE_ORDER",
    "DEPTH_DIFF",
    "DEPTH_DIFF_BLOCK",
    "DEPTH_SNAPSHOT",
    "DEPTH_SNAPSHOT_BLOCK",
    "GROUP16_HEADER",
    "GROUP_HEADER",
    "LEVEL_ROW",
    "MESSAGE_HEADER",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "STREAM_SUFFIX",
    "TEMPLATES",
    "TRADES",
    "TRADES_BLOCK",
    "TRADE_ROW",
    "VAR_STRING8_LENGTH",
]

BYTE_ORDER = "<"  # byteOrder="littleEndian"
SCHEMA_ID = 1  # messageSchema id="1"
SCHEMA_VERSION = 0  # messageSchema version="0"

# Template ids (sbe:message id=...)
TRADES = 10000  # TradesStreamEvent, <symbol>@trade
BEST_BID_ASK = 10001  # BestBidAskStreamEvent, <symbol>@bestBidAsk
DEPTH_SNAPSHOT = 10002  # DepthSnapshotStreamEvent, <symbol>@depth20
DEPTH_DIFF = 10003  # DepthDiffStreamEvent, <symbol>@depth

TEMPLATES = {
    TRADES: "TradesStreamEvent",
    BEST_BID_ASK: "BestBidAskStreamEvent",
    DEPTH_SNAPSHOT: "DepthSnapshotStreamEvent",
    DEPTH_DIFF: "DepthDiffStreamEvent",
}

# The stream each template's events belong to: "<symbol lowercased>" + suffix.
STREAM_SUFFIX = {
    TRADES: "@trade",
    BEST_BID_ASK: "@bestBidAsk",
    DEPTH_SNAPSHOT: "@depth20",
    DEPTH_DIFF: "@depth",
}

# Composites
MESSAGE_HEADER = struct.Struct("<HHHH")  # blockLength, templateId, schemaId, version
GROUP_HEADER = struct.Struct("<HI")  # groupSizeEncoding: blockLength uint16, numInGroup uint32
GROUP16_HEADER = struct.Struct("<HH")  # groupSize16Encoding: blockLength, numInGroup uint16
VAR_STRING8_LENGTH = struct.Struct("<B")  # varString8: length uint8, then the UTF-8 bytes

# Root blocks
TRADES_BLOCK = struct.Struct("<qqbb")  # eventTime, transactTime, priceExponent, qtyExponent
BEST_BID_ASK_BLOCK = struct.Struct("<qqbbqqqq")  # eventTime, bookUpdateId, exps, bid/ask p/q
DEPTH_SNAPSHOT_BLOCK = struct.Struct("<qqbb")  # eventTime, bookUpdateId, exponents
DEPTH_DIFF_BLOCK = struct.Struct("<qqqbb")  # eventTime, first/lastBookUpdateId, exponents

# Group rows
TRADE_ROW = struct.Struct("<qqqB")  # id, price, qty, isBuyerMaker
LEVEL_ROW = struct.Struct("<qq")  # price, qty

assert MESSAGE_HEADER.size == 8 and GROUP_HEADER.size == 6 and GROUP16_HEADER.size == 4
assert TRADES_BLOCK.size == 18 and BEST_BID_ASK_BLOCK.size == 50
assert DEPTH_SNAPSHOT_BLOCK.size == 18 and DEPTH_DIFF_BLOCK.size == 26
assert TRADE_ROW.size == 25 and LEVEL_ROW.size == 16
