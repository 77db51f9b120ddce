"""Binance's spot SBE market data (``stream-sbe.binance.com``): schema constants and a decoder.

Pure: no I/O, no threads. :func:`decode_frame` turns one binary frame into the JSON-shaped dicts
the JSON streams deliver, each with the stream it belongs to. :mod:`wsmanager.testing.sbe` has
the encoder the fake exchange uses.
"""

from __future__ import annotations

from .decoder import SbeDecodeError, UnsupportedFrameError, decimal_string, decode_frame
from .schema import SCHEMA_ID, SCHEMA_VERSION, STREAM_SUFFIX, TEMPLATES

__all__ = [
    "SCHEMA_ID",
    "SCHEMA_VERSION",
    "STREAM_SUFFIX",
    "TEMPLATES",
    "SbeDecodeError",
    "UnsupportedFrameError",
    "decimal_string",
    "decode_frame",
]
