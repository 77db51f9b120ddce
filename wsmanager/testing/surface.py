"""The newer spot surface of the fake exchange: ``@referencePrice``, ``@blockTrade``, times in
microseconds (``?timeUnit=MICROSECOND``), and restarting a stream's ids.

- ``<symbol>@referencePrice``: ``{"e": "referencePrice", "s", "r", "t"}``: no ``E``, and ``r``
  is null now and then (no reference price).
- ``<symbol>@blockTrade``: ``{"e": "blockTrade", "E", "s", "t", "p", "q", "T", "m"}``, ``t`` +1.
- :func:`to_microseconds`: a payload's times (``E``, ``T``, ``O``, ``C``, a kline's ``t``/``T``,
  a reference price's ``t``) multiplied by 1000, as the exchange sends them to a connection that
  asked for ``timeUnit=MICROSECOND``.
"""

from __future__ import annotations

import json
import random
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .payloads import CounterFeed, _PriceWalk, stream_symbol

__all__ = ["BlockTradeFeed", "ReferencePriceFeed", "TimeUnitError", "time_unit", "to_microseconds"]

_TIME_KEYS = ("E", "T", "O", "C")
_UNITS = {"MILLISECOND": False, "MICROSECOND": True}


class TimeUnitError(ValueError):
    """A ``timeUnit`` the exchange does not know."""


def time_unit(path: str) -> bool:
    """True when the request's query asks for microseconds (``timeUnit=MICROSECOND``, any case).

    Raises :class:`TimeUnitError` for another value."""
    for key, value in parse_qsl(urlsplit(path).query, keep_blank_values=True):
        if key == "timeUnit":
            micro = _UNITS.get(value.upper())
            if micro is None:
                raise TimeUnitError(f"Invalid timeUnit {value!r}: MILLISECOND or MICROSECOND")
            return micro
    return False


def _micro(payload: Any) -> Any:
    if isinstance(payload, list):
        return [_micro(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    out = dict(payload)
    for key in _TIME_KEYS:
        if type(out.get(key)) is int:
            out[key] *= 1000
    if out.get("e") == "referencePrice" and type(out.get("t")) is int:
        out["t"] *= 1000
    kline = out.get("k")
    if isinstance(kline, dict):
        kline = dict(kline)
        for key in ("t", "T"):
            if type(kline.get(key)) is int:
                kline[key] *= 1000
        out["k"] = kline
    return out


def to_microseconds(text: str) -> str:
    """The encoded payload ``text`` with its times in microseconds."""
    try:
        payload = json.loads(text)
    except ValueError:
        return text
    return json.dumps(_micro(payload), separators=(",", ":"), ensure_ascii=False)


class ReferencePriceFeed(CounterFeed):
    """``<symbol>@referencePrice``: no ``E``; ``r`` null on every fifth message."""

    def next_payloads(self) -> list[Any]:
        self.number += 1
        price = None if self.number % 5 == 0 else f"{self.rng.uniform(0.5, 1.5):.2f}"
        now = int(time.time() * 1000)
        return [{"e": "referencePrice", "s": stream_symbol(self.stream), "r": price, "t": now}]


class BlockTradeFeed:
    """``<symbol>@blockTrade``: ``t`` +1 each."""

    def __init__(self, stream: str, rng: random.Random) -> None:
        self.symbol = stream_symbol(stream)
        self.walk = _PriceWalk(rng)
        self.number = 0

    def next_payloads(self) -> list[Any]:
        self.number += 1
        now = int(time.time() * 1000)
        return [
            {
                "e": "blockTrade",
                "E": now,
                "s": self.symbol,
                "t": self.number,
                "p": self.walk.price(),
                "q": self.walk.qty(),
                "T": now - 1,
                "m": self.walk.rng.random() < 0.5,
            }
        ]

    def skip(self, count: int) -> None:
        self.number += count
