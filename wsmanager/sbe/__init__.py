"""Binance's spot SBE market data (``stream-sbe.binance.com``): schema constants and a decoder.

Pure: no I/O, no threads. :func:`decode_frame` turns one binary frame into the JSON-shaped dicts
the JSON streams deliver, each with the stream it belongs to. :mod:`wsmanager.testing.sbe` has
the encoder the fake exchange uses.
"""

from __future__ import annotations

from .decoder import SbeDecodeError, UnsupportedFrameError, decimal_string, decode_frame
from .schema import SCHEMA_ID, SCHEMA_VERSION, STREAM_SUFFIX, TEMPLATES
from .streams import SBE_STREAM_KINDS, book_speed, is_sbe_stream

__all__ = [
    "SBE_STREAM_KINDS",
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "STREAM_SUFFIX",
    "TEMPLATES",
    "SbeDecodeError",
    "UnsupportedFrameError",
    "book_speed",
    "decimal_string",
    "decode_frame",
    "is_sbe_stream",
]
