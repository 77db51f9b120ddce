"""History as a pandas DataFrame (``wsmanager[notebook]``): typed columns built batch by batch,
so the messages of a whole day never sit in memory at once.

``@aggTrade``: ``T`` (UTC timestamp), ``a``/``f``/``l`` (int64), ``p``/``q`` (float64),
``m``/``M`` (bool). ``@kline_<interval>``: ``t``/``T`` (UTC timestamps), ``o``/``h``/``l``/``c``/
``v``/``q``/``V``/``Q`` (float64), ``n`` (int64). ``exact=True`` keeps the prices and quantities
as the exchange's strings (object columns) instead of floats.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .streams import HistoryStream

__all__ = ["frame_from_batches"]

_TRADE_INTS = ("a", "f", "l")
_TRADE_DECIMALS = ("p", "q")
_KLINE_DECIMALS = ("o", "h", "l", "c", "v", "q", "V", "Q")


def frame_from_batches(
    stream: HistoryStream, batches: Iterable[list[dict[str, Any]]], scale: int, exact: bool
) -> Any:
    try:
        import numpy as np
        import pandas as pd
    except ImportError:
        raise ImportError("history_frame needs pandas: pip install 'wsmanager[notebook]'") from None
    columns: dict[str, list[Any]] = {}

    def add(name: str, values: Any) -> None:
        columns.setdefault(name, []).append(values)

    def decimals(values: Iterable[str], count: int) -> Any:
        if exact:
            return np.array(list(values), dtype=object)
        return np.fromiter(map(float, values), dtype=np.float64, count=count)

    trades = stream.kind == "aggTrade"
    for batch in batches:
        count = len(batch)
        if not count:
            continue
        if trades:
            add("T", np.fromiter((m["T"] for m in batch), dtype=np.int64, count=count))
            for key in _TRADE_INTS:
                add(key, np.fromiter((m[key] for m in batch), dtype=np.int64, count=count))
            for key in _TRADE_DECIMALS:
                add(key, decimals((m[key] for m in batch), count))
            for key in ("m", "M"):
                add(key, np.fromiter((m[key] for m in batch), dtype=np.bool_, count=count))
        else:
            candles = [m["k"] for m in batch]
            for key in ("t", "T"):
                add(key, np.fromiter((k[key] for k in candles), dtype=np.int64, count=count))
            for key in _KLINE_DECIMALS:
                add(key, decimals((k[key] for k in candles), count))
            add("n", np.fromiter((k["n"] for k in candles), dtype=np.int64, count=count))
    order = (
        ("T", *_TRADE_INTS, *_TRADE_DECIMALS, "m", "M")
        if trades
        else ("t", "T", *_KLINE_DECIMALS[:5], "n", *_KLINE_DECIMALS[5:])
    )
    unit = "ms" if scale == 1 else "us"
    data: dict[str, Any] = {}
    for name in order:
        parts = columns.pop(name, [])
        if name in ("t", "T"):
            stamps = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
            data[name] = pd.to_datetime(stamps, unit=unit, utc=True)
            continue
        if parts:
            values = np.concatenate(parts)
            # pandas 3 would make strings its own str dtype: keep them exactly, as objects
            data[name] = pd.Series(values, dtype=object) if values.dtype == object else values
        else:
            dtype = object if exact and name not in ("n", *_TRADE_INTS, "m", "M") else None
            empty = np.empty(0, dtype=dtype or _empty_dtype(name, trades))
            data[name] = pd.Series(empty, dtype=object) if dtype is object else empty
        del parts
    return pd.DataFrame(data, copy=False)


def _empty_dtype(name: str, trades: bool) -> str:
    if name in ("m", "M"):
        return "bool"
    if name == "n" or (trades and name in _TRADE_INTS):
        return "int64"
    return "float64"
