"""What history can be had for a stream, and when from: the stream's parts, ``since``/``until``
turned into epoch milliseconds, and the errors of the history client. Pure: no I/O."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..errors import WSManagerError

__all__ = [
    "INTERVAL_MS",
    "ArchiveFileError",
    "HistoryError",
    "HistoryOverflowError",
    "HistoryStream",
    "check_time_unit",
    "parse_since",
    "time_bounds",
]

INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}
_SYMBOL = re.compile(r"[a-z0-9]{1,20}")
_TIME_UNITS = ("millisecond", "microsecond")


class HistoryError(WSManagerError):
    """History could not be loaded (a source unreachable after retries, an answer that does
    not fit); ``stream`` names the stream."""

    def __init__(self, stream: str, reason: str) -> None:
        super().__init__(f"history of {stream!r}: {reason}")
        self.stream = stream
        self.reason = reason


class ArchiveFileError(HistoryError):
    """An archive file could not be used: ``file`` names it (its checksum did not match, or it
    is not a zip of the expected CSV)."""

    def __init__(self, stream: str, file: str, reason: str) -> None:
        super().__init__(stream, f"archive file {file}: {reason}")
        self.file = file
        self.detail = reason


class HistoryOverflowError(HistoryError):
    """More live messages arrived while history loaded than the buffer holds
    (``max_buffered_messages``): the oldest were dropped (``dropped``); aggregate trades are
    fetched again from REST, kline updates of an open candle are not."""

    def __init__(self, stream: str, limit: int, dropped: int) -> None:
        super().__init__(
            stream,
            f"{dropped} live message(s) dropped while history loaded: more than "
            f"max_buffered_messages ({limit}) arrived",
        )
        self.limit = limit
        self.dropped = dropped


@dataclass(frozen=True)
class HistoryStream:
    """A stream that has history: ``<symbol>@aggTrade`` or ``<symbol>@kline_<interval>``."""

    name: str
    symbol: str  # upper case, as the archive and REST spell it
    kind: str  # "aggTrade" or "kline"
    interval: str = ""  # klines only
    interval_ms: int = 0

    @classmethod
    def parse(cls, stream: object) -> HistoryStream:
        """``ValueError`` for a stream without history (anything else than the two kinds)."""
        if not isinstance(stream, str):
            raise TypeError(f"stream must be a str, not {type(stream).__name__}")
        symbol, _, kind = stream.partition("@")
        if _SYMBOL.fullmatch(symbol):
            if kind == "aggTrade":
                return cls(stream, symbol.upper(), "aggTrade")
            interval = kind.removeprefix("kline_")
            if kind.startswith("kline_") and interval in INTERVAL_MS:
                return cls(stream, symbol.upper(), "kline", interval, INTERVAL_MS[interval])
        raise ValueError(
            f"{stream!r} has no history: history is served for <symbol>@aggTrade and "
            f"<symbol>@kline_<interval> streams (lower-case symbol; intervals "
            f"{', '.join(INTERVAL_MS)})"
        )


def _epoch_ms(value: object, name: str, now: int) -> int:
    if isinstance(value, timedelta):
        if value <= timedelta(0):
            raise ValueError(f"{name} as a timedelta must be positive (back from now), got {value}")
        return now - value // timedelta(milliseconds=1)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{name} must be an aware datetime (e.g. tzinfo=timezone.utc), got the naive "
                f"{value.isoformat()}"
            )
        return int(value.timestamp() * 1000)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0 or value > 10**14:
            raise ValueError(f"{name} as an int must be epoch milliseconds, got {value}")
        return value
    raise TypeError(
        f"{name} must be an aware datetime, a timedelta or epoch milliseconds (int), "
        f"not {type(value).__name__}"
    )


def time_bounds(since: object, until: object = None, now: int | None = None) -> tuple[int, int]:
    """``(since, until)`` in epoch ms; ``until`` None: now. ``ValueError`` names what is wrong
    (a ``since`` in the future or not before ``until``, a naive datetime)."""
    now = int(time.time() * 1000) if now is None else now
    start = _epoch_ms(since, "since", now)
    end = now if until is None else _epoch_ms(until, "until", now)
    if start > now:
        raise ValueError(f"since is in the future ({_iso(start)}; now is {_iso(now)})")
    if start >= end:
        raise ValueError(f"since ({_iso(start)}) must be before until ({_iso(end)})")
    return start, min(end, now)


def check_time_unit(time_unit: object) -> int:
    """The factor from milliseconds to ``time_unit`` (1 or 1000)."""
    if time_unit not in _TIME_UNITS:
        raise ValueError(f"time_unit must be 'millisecond' or 'microsecond', got {time_unit!r}")
    return 1 if time_unit == "millisecond" else 1000


_RELATIVE = re.compile(r"([0-9]{1,6})([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str) -> datetime | timedelta:
    """A command line's ``--since``: ``6h``/``30m``/``2d`` (back from now) or an ISO date or
    time (``2026-11-01``, ``2026-11-01T12:00``; UTC unless it has an offset)."""
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        return timedelta(seconds=int(relative[1]) * _UNIT_SECONDS[relative[2]])
    text = text.strip()
    if text[-1:] in ("Z", "z"):  # Python 3.10's fromisoformat does not take "Z"
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration back from now (6h, 30m, 2d) or an ISO date "
            f"(2026-11-01, 2026-11-01T12:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
