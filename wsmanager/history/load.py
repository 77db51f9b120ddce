"""Loading one stream's history, oldest first: the archive for the whole days (and, for klines,
months) it has, then REST for the rest, stitched by id (trades) or open time (candles).

For ``@aggTrade`` the archive's last id of a day is followed by REST ``fromId`` paging, so no
trade is lost or repeated between sources; a day whose file is corrupt is fetched from REST
instead. For ``@kline_<interval>`` only closed candles are loaded (close time before ``until``
and before now), opening at or after ``since``. A monthly archive file is used for a whole
calendar month of candles; trades always use daily files (a month of BTCUSDT trades is gigabytes).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from .archive import ArchiveSource
from .convert import agg_trades_from_csv, agg_trades_from_rest, klines_from_csv, klines_from_rest
from .rest import AGG_TRADES_WEIGHT, KLINES_WEIGHT, PAGE_LIMIT, RestSource
from .streams import ArchiveFileError, HistoryError, HistoryStream

__all__ = ["NO_END", "HistoryLoader"]

log = logging.getLogger("wsmanager.history")

DAY_MS = 86_400_000
NO_END = 2**62  # ``until`` of a load that runs up to where the live stream takes over
Batch = list[dict[str, Any]]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _now_ms() -> int:
    return int(time.time() * 1000)


class HistoryLoader:
    """Loads one stream's history in batches; remembers where it ended (``next_id`` for trades,
    ``next_open`` for candles) so the live seam can be bridged from there."""

    def __init__(
        self,
        stream: HistoryStream,
        rest: RestSource,
        archive: ArchiveSource | None,
        scale: int = 1,
        progress: Callable[[int], object] | None = None,
    ) -> None:
        self.stream = stream
        self.rest = rest
        self.archive = archive
        self.scale = scale
        self.progress = progress
        self.next_id: int | None = None  # the next aggregate trade id wanted
        self.next_open: int | None = None  # ms: the next candle open time wanted
        self.bad_files: list[str] = []

    def close(self) -> None:
        self.rest.close()
        if self.archive is not None:
            self.archive.close()

    def load(self, since: int, until: int = NO_END) -> Iterator[Batch]:
        """Every message with a time in ``[since, until)`` (ms), oldest first, in batches."""
        if self.stream.kind == "aggTrade":
            return self._agg_trades(since, until)
        return self._klines(since, until)

    def _report(self, ms: int) -> None:
        if self.progress is not None:
            self.progress(ms)

    def _archive_csv(self, path: str) -> Iterator[bytes] | ArchiveFileError | None:
        assert self.archive is not None
        try:
            return self.archive.csv(path)
        except ArchiveFileError as exc:
            log.warning("%s; using REST instead", exc)
            self.bad_files.append(exc.file)
            return exc

    def _instead(self, bad: ArchiveFileError, batches: Iterator[Batch]) -> Iterator[Batch]:
        """REST for the span of an unusable archive file; if that fails too, the error names
        the file."""
        try:
            yield from batches
        except HistoryError as exc:
            if type(exc) is not HistoryError:
                raise
            raise ArchiveFileError(
                self.stream.name, bad.file, f"{bad.detail}; REST instead failed: {exc.reason}"
            ) from exc

    # -- aggregate trades ------------------------------------------------------------------------

    def _agg_trades(self, since: int, until: int) -> Iterator[Batch]:
        scale, start = self.scale, since
        day = since - since % DAY_MS
        now = _now_ms()
        while self.archive is not None and day < until and day + DAY_MS <= now:
            end = day + DAY_MS
            path = self.archive.daily_path(_utc(day).date())
            data = self._archive_csv(path)
            if data is None:
                break  # not published (yet): REST from here
            if isinstance(data, ArchiveFileError):
                yield from self._instead(data, self._rest_trades(start, min(end, until)))
            else:
                name = path.rsplit("/")[-1]
                for chunk in data:
                    rows = agg_trades_from_csv(chunk, self.stream.symbol, scale, name)
                    yield from self._archive_trades(rows, since, until, day, end)
            start = end
            self._report(min(end, until))
            day = end
        if start < until:
            yield from self._rest_trades(start, until)

    def _archive_trades(
        self, rows: Batch, since: int, until: int, day: int, end: int
    ) -> Iterator[Batch]:
        scale = self.scale
        if since > day or until < end:
            rows = [r for r in rows if since * scale <= r["T"] < until * scale]
        if self.next_id is not None and rows:
            if rows[0]["a"] < self.next_id:
                rows = [r for r in rows if r["a"] >= self.next_id]
            if rows and rows[0]["a"] > self.next_id:
                yield from self.trades_between(self.next_id, rows[0]["a"] - 1)
        if rows:
            _check_contiguous(self.stream.name, rows)
            self.next_id = rows[-1]["a"] + 1
            yield rows

    def _page(self, params: dict[str, str | int]) -> Batch:
        page = self.rest.get(
            "/api/v3/aggTrades",
            {"symbol": self.stream.symbol, "limit": PAGE_LIMIT, **params},
            AGG_TRADES_WEIGHT,
        )
        try:
            return agg_trades_from_rest(page, self.stream.symbol, self.scale)
        except ValueError as exc:
            raise HistoryError(self.stream.name, f"REST: {exc}") from None

    def _rest_trades(self, start: int, end: int) -> Iterator[Batch]:
        """Trades from ``next_id`` (or from time ``start``) while their time is before ``end``;
        stops early when caught up with the exchange (a short page)."""
        scale = self.scale
        while True:
            if self.next_id is None:
                rows = self._page({"startTime": start})
                if not rows:  # none since start: where the live stream must go on from
                    latest = self._page({"limit": 1})
                    if latest and latest[-1]["T"] < start * scale:
                        self.next_id = latest[-1]["a"] + 1
                    return
            else:
                rows = self._page({"fromId": self.next_id})
                if rows and rows[0]["a"] != self.next_id:
                    raise HistoryError(
                        self.stream.name,
                        f"REST answered id {rows[0]['a']} where {self.next_id} was asked",
                    )
            if rows:
                _check_contiguous(self.stream.name, rows)
            kept = (
                rows
                if not rows or rows[-1]["T"] < end * scale
                else [r for r in rows if r["T"] < end * scale]
            )
            if kept:
                self.next_id = kept[-1]["a"] + 1
                self._report(kept[-1]["T"] // scale)
                yield kept
            if len(kept) < len(rows) or len(rows) < PAGE_LIMIT:
                return

    def trades_between(self, first: int, last: int) -> Iterator[Batch]:
        """The trades with ids ``first..last`` (REST), for a seam; sets ``next_id``."""
        self.next_id = first
        while self.next_id <= last:
            rows = self._page({"fromId": self.next_id, "limit": min(PAGE_LIMIT, last - first + 1)})
            rows = [r for r in rows if r["a"] <= last]
            if not rows or rows[0]["a"] != self.next_id:
                raise HistoryError(
                    self.stream.name,
                    f"REST has no aggregate trade {self.next_id} (wanted to {last})",
                )
            _check_contiguous(self.stream.name, rows)
            self.next_id = rows[-1]["a"] + 1
            yield rows

    # -- klines ----------------------------------------------------------------------------------

    def _klines(self, since: int, until: int) -> Iterator[Batch]:
        length, scale = self.stream.interval_ms, self.scale
        start = since
        day = since - since % DAY_MS
        now = _now_ms()
        use_archive = self.archive is not None and length <= DAY_MS
        while use_archive and day < until and day + DAY_MS <= now:
            end, path = self._kline_file(day, until, now)
            data = self._archive_csv(path)
            if data is None and "/monthly/" in path:
                end, path = day + DAY_MS, self._daily(day)
                data = self._archive_csv(path)
            if data is None:
                break
            if isinstance(data, ArchiveFileError):
                yield from self._instead(data, self._rest_klines(start, min(end, until)))
            else:
                name = path.rsplit("/")[-1]
                symbol, interval = self.stream.symbol, self.stream.interval
                rows = [
                    r
                    for chunk in data
                    for r in klines_from_csv(chunk, symbol, interval, scale, name)
                    if r["k"]["t"] >= since * scale and r["k"]["T"] < until * scale
                ]
                if rows:
                    self.next_open = rows[-1]["k"]["t"] // scale + length
                    yield rows
            start = end
            self._report(min(end, until))
            day = end
        if start < until:
            yield from self._rest_klines(start, until)

    def _daily(self, day: int) -> str:
        assert self.archive is not None
        return self.archive.daily_path(_utc(day).date())

    def _kline_file(self, day: int, until: int, now: int) -> tuple[int, str]:
        """``(end, path)`` of the file covering ``day``: its month when the whole month is
        wanted and over, else the day."""
        assert self.archive is not None
        moment = _utc(day)
        if moment.day == 1:
            following = (
                moment.replace(year=moment.year + 1, month=1)
                if moment.month == 12
                else moment.replace(month=moment.month + 1)
            )
            end = int(following.timestamp() * 1000)
            if end <= until and end + DAY_MS <= now:
                return end, self.archive.monthly_path(moment.year, moment.month)
        return day + DAY_MS, self._daily(day)

    def _rest_klines(self, start: int, end: int) -> Iterator[Batch]:
        """Closed candles opening at or after ``start`` and closing before ``end`` (and now)."""
        scale = self.scale
        while start < end:
            now = _now_ms()
            params: dict[str, str | int] = {
                "symbol": self.stream.symbol,
                "interval": self.stream.interval,
                "startTime": start,
                "limit": PAGE_LIMIT,
            }
            if end < NO_END:
                params["endTime"] = end - 1
            page = self.rest.get("/api/v3/klines", params, KLINES_WEIGHT)
            try:
                rows = klines_from_rest(page, self.stream.symbol, self.stream.interval, scale)
            except ValueError as exc:
                raise HistoryError(self.stream.name, f"REST: {exc}") from None
            limit = min(end, now) * scale
            kept = [r for r in rows if r["k"]["t"] >= start * scale and r["k"]["T"] < limit]
            if kept:
                self.next_open = kept[-1]["k"]["t"] // scale + self.stream.interval_ms
                self._report(kept[-1]["k"]["T"] // scale)
                yield kept
            if len(kept) < len(rows) or len(rows) < PAGE_LIMIT:
                return
            start = rows[-1]["k"]["t"] // scale + self.stream.interval_ms

    def klines_between(self, first_open: int, before_open: int) -> Iterator[Batch]:
        """Closed candles opening in ``[first_open, before_open)`` (ms; REST), for a seam."""
        return self._rest_klines(first_open, before_open)


def _check_contiguous(stream: str, rows: Batch) -> None:
    if rows[-1]["a"] - rows[0]["a"] != len(rows) - 1:
        raise HistoryError(
            stream, f"aggregate trade ids {rows[0]['a']}..{rows[-1]['a']} have holes"
        )
