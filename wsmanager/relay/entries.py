"""Pure rules of the relay's Redis streams: key names, entry ids, the ``data`` field.

An entry id is ``<ms>-<seq>`` in Redis; here it is a ``(first, second)`` tuple of ints, ordered
like Redis orders them. Streams whose payloads carry an exchange sequence number get ids made
from it, so two relays writing the same message write the same id and Redis refuses the second
("equal or smaller than the target stream top item"); other streams get ``<receive ms>-<n>``
ids made by the relay (strictly increasing), so a batch written again after a lost reply is
refused too instead of duplicated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "Entry",
    "EntryId",
    "IdAssigner",
    "decode_data",
    "encode_data",
    "format_id",
    "parse_id",
    "sequence_field",
    "stream_key",
    "validate_start",
]

DEFAULT_KEY_PREFIX = "wsmanager:"

EntryId = tuple[int, int]

# Payload fields that number a stream's messages, by the kind of stream (Binance's rules).
_SEQUENCE_FIELDS = {
    "trade": "t",
    "aggTrade": "a",
    "depth": "u",
    "bookTicker": "u",
    "bestBidAsk": "u",  # SBE
}
_ID = re.compile(rb"(\d+)-(\d+)")
_START = re.compile(r"\$|\d+(-\d+)?")


def stream_key(stream: str, prefix: str = DEFAULT_KEY_PREFIX) -> str:
    """The Redis key of an exchange stream: ``wsmanager:btcusdt@trade``."""
    return prefix + stream


def sequence_field(stream: str) -> str | None:
    """The payload field that numbers ``stream``'s messages, or None.

    ``btcusdt@trade`` -> ``t``, ``btcusdt@aggTrade`` -> ``a``, ``btcusdt@depth`` and
    ``btcusdt@depth@100ms`` -> ``u``, ``btcusdt@bookTicker`` and (SBE) ``btcusdt@bestBidAsk``
    -> ``u``. All-market streams (``!bookTicker``) and partial depth (``btcusdt@depth5``) have
    no single sequence.
    """
    if stream.startswith("!") or "@" not in stream:
        return None
    kind = stream.split("@")[1]
    return _SEQUENCE_FIELDS.get(kind)


def parse_id(raw: bytes | str) -> EntryId:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    match = _ID.fullmatch(raw.encode() if isinstance(raw, str) else raw)
    if match is None:
        raise ValueError(f"not a Redis stream entry id: {raw!r}")
    return int(match[1]), int(match[2])


def format_id(entry_id: EntryId) -> str:
    return f"{entry_id[0]}-{entry_id[1]}"


def validate_start(start: str) -> str:
    """``"$"`` (new entries only), ``"0"`` (the oldest retained) or an entry id to read after."""
    if not isinstance(start, str) or not _START.fullmatch(start):
        raise ValueError(
            f"start must be '$' (new entries), '0' (oldest retained) or an entry id like "
            f"'1700000000000-0', got {start!r}"
        )
    return start


def _encode_stdlib(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _decode_stdlib(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


encode_data: Callable[[Any], bytes]
decode_data: Callable[[bytes], Any]
try:  # the "fast" extra; both relays of a pair should use the same encoder (see docs/relay.md)
    import orjson

    encode_data = orjson.dumps
    decode_data = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    encode_data = _encode_stdlib
    decode_data = _decode_stdlib


@dataclass(slots=True)
class Entry:
    """One message on its way to Redis. ``id`` may be re-stamped (never for sequenced ones)."""

    key: str
    id: EntryId
    data: bytes
    stamp_ms: int  # wall-clock receive time, milliseconds
    sequenced: bool


class IdAssigner:
    """Makes strictly increasing entry ids for one stream, from its sequence numbers if it has
    them, else from the receive time."""

    def __init__(self, stream: str) -> None:
        self.field = sequence_field(stream)
        self.last: EntryId = (0, 0)

    def sequence_of(self, payload: Any) -> object:
        """The sequence number in ``payload`` (None for a stream without them)."""
        if self.field is None or type(payload) is not dict:
            return None
        return payload.get(self.field)

    def next(self, sequence: object, now_ms: int) -> EntryId | None:
        """The id of a message with ``sequence`` (see :meth:`sequence_of`) received at
        ``now_ms``; None for a sequenced message that is not past the last one (a duplicate,
        or out of order): it must not be written."""
        last = self.last
        if self.field is not None:
            if type(sequence) is int and sequence >= 0:
                new = (sequence, 0) if sequence > 0 else (0, 1)
                if new <= last:
                    return None
            else:  # a message without a number on a numbered stream: right after the last one
                new = (last[0], last[1] + 1)
        elif now_ms > last[0]:
            new = (now_ms, 0)
        else:
            new = (last[0], last[1] + 1)
        self.last = new
        return new

    def advance_past(self, entry_id: EntryId) -> None:
        """Never hand out ``entry_id`` or anything before it (another writer wrote up to it)."""
        if entry_id > self.last:
            self.last = entry_id
