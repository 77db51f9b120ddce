"""Archive CSV rows and REST answers as the live stream's messages.

``@aggTrade``: ``{"e": "aggTrade", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"}`` with
``E`` = ``T``. ``@kline_<interval>``: ``{"e": "kline", "E", "s", "k": {"t", "T", "s", "i", "o",
"c", "h", "l", "v", "n", "x": True, "q", "V", "Q"}}`` with ``E`` = ``k.T`` (neither source has the
first/last trade ids of a candle, so ``f`` and ``L`` are absent). Times are epoch milliseconds
(``scale`` 1) or microseconds (``scale`` 1000); archive files in microseconds (spot, from
2025-01-01) are recognised by their values. Everything is parsed strictly: a malformed row raises
``ValueError`` naming it. Pure: no I/O.
"""

from __future__ import annotations

import re
from itertools import repeat
from typing import Any

__all__ = [
    "agg_trades_from_csv",
    "agg_trades_from_rest",
    "klines_from_csv",
    "klines_from_rest",
    "rescaled",
]

_CSV_BYTES = re.compile(rb"[0-9A-Za-z.,\r\n-]*")
_DECIMAL = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{1,20})?")
_MICROSECONDS_FROM = 10**14  # ms timestamps are ~1.7e12, µs ~1.7e15
_BOOL = {"True": True, "False": False, "true": True, "false": False}


def _lines(data: bytes, what: str) -> list[str]:
    if data[:1].isalpha():  # a header line (futures files have one)
        data = data[data.find(b"\n") + 1 :] if b"\n" in data else b""
    if not _CSV_BYTES.fullmatch(data):
        raise ValueError(f"{what}: characters a Binance CSV never has")
    lines = data.decode("ascii").splitlines()
    return lines if all(lines[-1:]) else [line for line in lines if line]


def _factor(first_time: str, scale: int) -> tuple[int, int]:
    """``(multiply, divide)`` taking the file's unit to ``scale`` (1: ms, 1000: µs)."""
    micro = int(first_time) >= _MICROSECONDS_FROM
    if micro:
        return (1, 1) if scale == 1000 else (1, 1000)
    return (scale, 1)


def agg_trades_from_csv(
    data: bytes, symbol: str, scale: int = 1, what: str = "aggTrades CSV"
) -> list[dict[str, Any]]:
    """An archive ``aggTrades`` CSV (``a,p,q,f,l,T,m,M``) as ``@aggTrade`` messages."""
    lines = _lines(data, what)
    if not lines:
        return []
    try:
        multiply, divide = _factor(lines[0].split(",", 6)[5], scale)
        flags = _BOOL
        if divide == 1000:  # µs to ms: drop the last three digits (the times are positive)
            messages = [
                {
                    "e": "aggTrade",
                    "E": (at := int(t[:-3])),
                    "s": symbol,
                    "a": int(a),
                    "p": p,
                    "q": q,
                    "f": int(f),
                    "l": int(last),
                    "T": at,
                    "m": flags[m],
                    "M": flags[big],
                }
                for a, p, q, f, last, t, m, big in map(str.split, lines, repeat(","))
            ]
        else:
            messages = [
                {
                    "e": "aggTrade",
                    "E": (at := int(t) * multiply),
                    "s": symbol,
                    "a": int(a),
                    "p": p,
                    "q": q,
                    "f": int(f),
                    "l": int(last),
                    "T": at,
                    "m": flags[m],
                    "M": flags[big],
                }
                for a, p, q, f, last, t, m, big in map(str.split, lines, repeat(","))
            ]
    except (ValueError, KeyError, IndexError):
        raise ValueError(f"{what}: malformed row {_first_bad(lines)}") from None
    _check_decimals(messages[0], what)
    return messages


def _first_bad(lines: list[str]) -> str:
    """Which row failed (the slow path, after a failure)."""
    for number, line in enumerate(lines, 1):
        fields = line.split(",")
        if (
            len(fields) != 8
            or not all(f.isascii() and f.isdigit() and f for f in fields[:1] + fields[3:6])
            or fields[6] not in _BOOL
            or fields[7] not in _BOOL
            or len(fields[5]) < 4
        ):
            return f"{number}: {line[:120]!r}"
    return "?"


def _check_decimals(message: dict[str, Any], what: str) -> None:
    for key in ("p", "q"):
        if not _DECIMAL.fullmatch(message[key]):
            raise ValueError(f"{what}: {key}={message[key][:40]!r} is not a decimal")


def agg_trades_from_rest(page: Any, symbol: str, scale: int = 1) -> list[dict[str, Any]]:
    """A ``GET /api/v3/aggTrades`` answer as ``@aggTrade`` messages."""
    if not isinstance(page, list):
        raise ValueError(f"an aggTrades answer must be a list, got {page!r:.120}")
    messages = []
    for trade in page:
        try:
            values = [trade[k] for k in ("a", "f", "l", "T")]
            p, q, m, big = trade["p"], trade["q"], trade["m"], trade.get("M", True)
        except (KeyError, TypeError):
            raise ValueError(f"malformed aggregate trade {trade!r:.200}") from None
        if not all(type(v) is int for v in values) or not all(type(v) is bool for v in (m, big)):
            raise ValueError(f"malformed aggregate trade {trade!r:.200}")
        if not (isinstance(p, str) and _DECIMAL.fullmatch(p)) or not (
            isinstance(q, str) and _DECIMAL.fullmatch(q)
        ):
            raise ValueError(f"malformed aggregate trade {trade!r:.200}: p and q")
        a, f, last, at = values
        at *= scale
        messages.append(
            {
                "e": "aggTrade",
                "E": at,
                "s": symbol,
                "a": a,
                "p": p,
                "q": q,
                "f": f,
                "l": last,
                "T": at,
                "m": m,
                "M": big,
            }
        )
    return messages


def _kline(row: list[Any], symbol: str, interval: str) -> dict[str, Any]:
    t, o, h, low, c, v, close, q, n, taker_v, taker_q = row[:11]
    return {
        "e": "kline",
        "E": close,
        "s": symbol,
        "k": {
            "t": t,
            "T": close,
            "s": symbol,
            "i": interval,
            "o": o,
            "c": c,
            "h": h,
            "l": low,
            "v": v,
            "n": n,
            "x": True,
            "q": q,
            "V": taker_v,
            "Q": taker_q,
        },
    }


def klines_from_csv(
    data: bytes, symbol: str, interval: str, scale: int = 1, what: str = "klines CSV"
) -> list[dict[str, Any]]:
    """An archive ``klines`` CSV (12 columns) as closed ``@kline_<interval>`` candles."""
    lines = _lines(data, what)
    if not lines:
        return []
    messages = []
    try:
        multiply, divide = _factor(lines[0].split(",", 1)[0], scale)
        for number, line in enumerate(lines, 1):  # noqa: B007 - named in the error
            row: list[Any] = line.split(",")
            if len(row) != 12:
                raise ValueError
            for i in (1, 2, 3, 4, 5, 7, 9, 10):
                if not _DECIMAL.fullmatch(row[i]):
                    raise ValueError
            row[0] = int(row[0]) * multiply // divide
            row[6] = (int(row[6]) * multiply + multiply - 1) // divide  # ...999
            row[8] = int(row[8])
            messages.append(_kline(row, symbol, interval))
    except (ValueError, IndexError):
        raise ValueError(f"{what}: malformed row {number}: {line[:160]!r}") from None
    return messages


def klines_from_rest(page: Any, symbol: str, interval: str, scale: int = 1) -> list[dict[str, Any]]:
    """A ``GET /api/v3/klines`` answer as ``@kline_<interval>`` candles (all marked closed:
    the caller keeps only those that are)."""
    if not isinstance(page, list):
        raise ValueError(f"a klines answer must be a list, got {page!r:.120}")
    messages = []
    for row in page:
        if not isinstance(row, list) or len(row) < 11:
            raise ValueError(f"malformed kline {row!r:.200}")
        if not all(type(row[i]) is int for i in (0, 6, 8)) or not all(
            isinstance(row[i], str) and _DECIMAL.fullmatch(row[i])
            for i in (1, 2, 3, 4, 5, 7, 9, 10)
        ):
            raise ValueError(f"malformed kline {row!r:.200}")
        values = list(row)
        values[0] *= scale
        values[6] = values[6] * scale + scale - 1
        messages.append(_kline(values, symbol, interval))
    return messages


def rescaled(message: dict[str, Any], kind: str, have: int, want: int) -> dict[str, Any]:
    """A copy of a live message with its times from ``have`` to ``want`` (1: ms, 1000: µs);
    the original is shared with the stream's other subscribers, so it is not changed."""
    copy = dict(message)
    if want > have:
        copy["E"] = message["E"] * want
        if kind == "kline":
            k = copy["k"] = dict(message["k"])
            k["t"] = k["t"] * want
            k["T"] = k["T"] * want + want - 1
        else:
            copy["T"] = message["T"] * want
    else:
        copy["E"] = message["E"] // have
        if kind == "kline":
            k = copy["k"] = dict(message["k"])
            k["t"] = k["t"] // have
            k["T"] = k["T"] // have
        else:
            copy["T"] = message["T"] // have
    return copy
