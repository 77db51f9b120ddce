"""A fake of Binance's public data archive (``https://data.binance.vision``) on loopback.

Serves the exchange's past (:mod:`.past`) as the real archive lays it out::

    data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-11-30.zip
    data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-2026-11-30.zip
    data/spot/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-10.zip
    data/spot/monthly/klines/BTCUSDT/1m/BTCUSDT-1m-2026-10.zip

each zip holding one header-less CSV (timestamps in microseconds from 2025-01-01, milliseconds
before) and each with a ``.CHECKSUM`` file (``<sha256>  <name>.zip``, as ``sha256sum`` writes it).
A day appears ``lag_days`` after it ends (today and, by default, yesterday are missing); a month
once it has ended and its last day is published. :meth:`FakeArchive.corrupt` serves a file whose
bytes no longer match its checksum. Every request is logged (:meth:`FakeArchive.requests`).
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import re
import threading
import time
import zipfile
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .past import DAY_MS, INTERVAL_MS, Pasts, SyntheticPast

__all__ = ["FakeArchive"]

_PATH = re.compile(
    r"/data/spot/(?P<period>daily|monthly)/(?P<kind>aggTrades|klines)/(?P<symbol>[A-Z0-9]{1,20})/"
    r"(?:(?P<interval>[0-9]{1,2}[smhd])/)?(?P=symbol)-(?P<label>aggTrades|[0-9]{1,2}[smhd])-"
    r"(?P<date>[0-9]{4}-[0-9]{2}(?:-[0-9]{2})?)\.zip(?P<checksum>\.CHECKSUM)?"
)


class FakeArchive:
    """The archive's HTTP server (``url``: give it to ``WSManager(archive_url=...)``)."""

    def __init__(self, pasts: Pasts, host: str = "127.0.0.1", port: int = 0) -> None:
        self.pasts = pasts
        self._lock = threading.Lock()  # guards _files, _corrupt, _log
        self._files: dict[str, bytes] = {}  # path -> zip bytes (made once)
        self._corrupt: set[str] = set()
        self._log: list[str] = []
        self._changed = threading.Condition(self._lock)
        archive = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, kind = archive._answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="wsmanager-fake-archive", daemon=True
        )
        self._started = False
        self._closed = False

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), self._server.server_address[1]
        return f"http://{host}:{port}"

    def start(self) -> FakeArchive:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and end every thread (idempotent)."""
        with self._lock:
            closed, self._closed = self._closed, True
        if closed:
            return
        if self._started:
            self._server.shutdown()
            self._thread.join(10)
        self._server.server_close()

    def __enter__(self) -> FakeArchive:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- controls --------------------------------------------------------------------------------

    def corrupt(self, name: str) -> None:
        """Serve the file ``name`` (a zip's name, or its path) with bytes its checksum no
        longer matches."""
        with self._lock:
            self._corrupt.add(name.rsplit("/", 1)[-1])

    def requests(self) -> list[str]:
        """Every path requested, in order."""
        with self._lock:
            return list(self._log)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self._log) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -- answers ---------------------------------------------------------------------------------

    def _answer(self, path: str) -> tuple[int, bytes, str]:
        with self._changed:
            self._log.append(path)
            self._changed.notify_all()
        found = _PATH.fullmatch(path)
        if found is None or (found["kind"] == "klines") != (found["interval"] is not None):
            return _not_found(path)
        interval = found["interval"]
        label = "aggTrades" if interval is None else interval
        if found["label"] != label or (interval is not None and interval not in INTERVAL_MS):
            return _not_found(path)
        past = self.pasts.of(found["symbol"])
        span = _span(found["period"], found["date"])
        if span is None or not _published(past, *span, found["period"]):
            return _not_found(path)
        data = self._zip(path.removesuffix(".CHECKSUM"), past, label, *span)
        name = path.rsplit("/", 1)[1].removesuffix(".CHECKSUM")
        if found["checksum"]:
            digest = hashlib.sha256(data).hexdigest()
            return 200, f"{digest}  {name}\n".encode(), "text/plain"
        with self._lock:
            corrupt = name in self._corrupt
        if corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        return 200, data, "application/zip"

    def _zip(self, path: str, past: SyntheticPast, label: str, start: int, end: int) -> bytes:
        with self._lock:
            data = self._files.get(path)
        if data is not None:
            return data
        if label == "aggTrades":
            csv = past.agg_trades_csv(start, end)
        else:
            csv = past.klines_csv(label, start, end)
        buffer = io.BytesIO()
        name = path.rsplit("/", 1)[1].removesuffix(".zip") + ".csv"
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.writestr(name, csv)
        data = buffer.getvalue()
        with self._lock:
            self._files[path] = data
        return data


def _span(period: str, date: str) -> tuple[int, int] | None:
    """``[start, end)`` in ms of a daily (``YYYY-MM-DD``) or monthly (``YYYY-MM``) file."""
    try:
        if period == "daily":
            day = datetime.strptime(date, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            start = int(day.timestamp() * 1000)
            return start, start + DAY_MS
        month = datetime.strptime(date, "%Y-%m").replace(tzinfo=timezone.utc)
    except ValueError:
        return None
    days = calendar.monthrange(month.year, month.month)[1]
    start = int(month.timestamp() * 1000)
    return start, start + days * DAY_MS


def _published(past: SyntheticPast, start: int, end: int, period: str) -> bool:
    if period == "daily":
        return past.day_published(start)
    return past.day_published(start) and past.day_published(end - DAY_MS)


def _not_found(path: str) -> tuple[int, bytes, str]:
    key = html.escape(path[1:60])
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
        f"<Message>The specified key does not exist.</Message><Key>{key}</Key></Error>"
    )
    return 404, body.encode(), "application/xml"
