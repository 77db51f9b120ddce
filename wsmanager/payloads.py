"""Binance-shaped market-data payloads for the fake exchange, by stream type."""

from __future__ import annotations

import random
import time
from typing import Any

__all__ = ["make_payload", "stream_kind"]

_SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")


def stream_kind(stream: str) -> str:
    """``btcusdt@kline_1m`` -> ``kline``; ``!ticker@arr`` -> ``!ticker@arr``."""
    if stream.startswith("!"):
        return stream
    kind = stream.split("@", 1)[1] if "@" in stream else stream
    kind = kind.split("@", 1)[0]  # depth@100ms -> depth
    if kind.startswith("kline_"):
        return "kline"
    if kind.startswith("depth") and kind[5:].isdigit():
        return "partial_depth"
    return kind


def _symbol(stream: str) -> str:
    return stream.split("@", 1)[0].upper()


def _price(rng: random.Random) -> str:
    return f"{rng.uniform(20_000, 70_000):.2f}"


def _qty(rng: random.Random) -> str:
    return f"{rng.uniform(0.0001, 2):.5f}"


def _ticker(symbol: str, now: int, rng: random.Random, mini: bool) -> dict[str, Any]:
    base = {
        "e": "24hrMiniTicker" if mini else "24hrTicker",
        "E": now,
        "s": symbol,
        "c": _price(rng),
        "o": _price(rng),
        "h": _price(rng),
        "l": _price(rng),
        "v": _qty(rng),
        "q": _qty(rng),
    }
    if not mini:
        base.update(
            {
                "p": f"{rng.uniform(-500, 500):.2f}",
                "P": f"{rng.uniform(-3, 3):.3f}",
                "w": _price(rng),
                "x": _price(rng),
                "Q": _qty(rng),
                "b": _price(rng),
                "B": _qty(rng),
                "a": _price(rng),
                "A": _qty(rng),
                "O": now - 86_400_000,
                "C": now,
                "F": 0,
                "L": 18150,
                "n": 18151,
            }
        )
    return base


def make_payload(stream: str, sequence: int, rng: random.Random | None = None) -> Any:
    """A payload shaped like Binance's for ``stream``; ``sequence`` numbers trade/update ids."""
    rng = rng or random.Random(sequence)
    now = int(time.time() * 1000)
    symbol = _symbol(stream)
    kind = stream_kind(stream)
    if kind == "trade":
        return {
            "e": "trade",
            "E": now,
            "s": symbol,
            "t": sequence,
            "p": _price(rng),
            "q": _qty(rng),
            "T": now,
            "m": rng.random() < 0.5,
            "M": True,
        }
    if kind == "aggTrade":
        return {
            "e": "aggTrade",
            "E": now,
            "s": symbol,
            "a": sequence,
            "p": _price(rng),
            "q": _qty(rng),
            "f": sequence * 2,
            "l": sequence * 2 + 1,
            "T": now,
            "m": rng.random() < 0.5,
            "M": True,
        }
    if kind == "kline":
        interval = stream.split("@", 1)[1].split("_", 1)[1]
        return {
            "e": "kline",
            "E": now,
            "s": symbol,
            "k": {
                "t": now - 60_000,
                "T": now - 1,
                "s": symbol,
                "i": interval,
                "f": sequence,
                "L": sequence + 10,
                "o": _price(rng),
                "c": _price(rng),
                "h": _price(rng),
                "l": _price(rng),
                "v": _qty(rng),
                "n": 10,
                "x": False,
                "q": _qty(rng),
                "V": _qty(rng),
                "Q": _qty(rng),
                "B": "0",
            },
        }
    if kind == "depth":
        return {
            "e": "depthUpdate",
            "E": now,
            "s": symbol,
            "U": sequence * 3,
            "u": sequence * 3 + 2,
            "b": [[_price(rng), _qty(rng)]],
            "a": [[_price(rng), _qty(rng)]],
        }
    if kind == "partial_depth":
        levels = int(stream.split("@", 1)[1][5:])
        return {
            "lastUpdateId": sequence,
            "bids": [[_price(rng), _qty(rng)] for _ in range(levels)],
            "asks": [[_price(rng), _qty(rng)] for _ in range(levels)],
        }
    if kind == "bookTicker":
        return {
            "u": sequence,
            "s": symbol,
            "b": _price(rng),
            "B": _qty(rng),
            "a": _price(rng),
            "A": _qty(rng),
        }
    if kind in ("ticker", "miniTicker"):
        return _ticker(symbol, now, rng, mini=kind == "miniTicker")
    if kind in ("!ticker@arr", "!miniTicker@arr"):
        mini = kind == "!miniTicker@arr"
        return [_ticker(s, now, rng, mini) for s in _SYMBOLS]
    return {"e": kind, "E": now, "s": symbol, "seq": sequence}
