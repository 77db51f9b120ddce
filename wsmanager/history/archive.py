"""Binance's public data archive (``https://data.binance.vision``): daily and monthly zips of
aggregate trades and klines, each verified against its ``.CHECKSUM`` (SHA-256) before use and
kept in a file cache (``cache_dir``; None: no cache).

Two requests per file (the zip and its checksum), none once cached. A missing file (404: not
published yet, or a day before the symbol existed) is ``None``; a file whose checksum does not
match raises :class:`ArchiveFileError` naming it, and is not cached.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import requests

from .._redact import redact_text
from ..backoff import BackoffPolicy
from ..config import redact_url
from ..proxy import requests_proxies
from .streams import ArchiveFileError, HistoryError, HistoryStream

__all__ = ["ArchiveSource"]

log = logging.getLogger("wsmanager.history")

MAX_FILE_BYTES = 2**30  # a day of BTCUSDT aggregate trades is ~50 MB zipped
MAX_CSV_BYTES = 4 * 2**30
CHUNK_BYTES = 2**19  # about 7,500 aggregate trades: a batch of messages
_CHECKSUM = re.compile(r"([0-9a-f]{64})[ \t]+\*?(\S{1,200})\s*")
_rng = random.Random()


class ArchiveSource:
    """Archive files of one stream, verified and cached."""

    def __init__(
        self,
        base_url: str,
        stream: HistoryStream,
        *,
        stop: threading.Event,
        cache_dir: str | os.PathLike[str] | None,
        proxy: str | None = None,
        timeout: float = 30.0,
        attempts: int = 3,
        retry: BackoffPolicy | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self.stop = stop
        self.cache = None if cache_dir is None else Path(cache_dir)
        self.timeout = timeout
        self.attempts = attempts
        self.retry = retry or BackoffPolicy(base_delay=0.5, max_delay=5.0)
        self.session = requests.Session()
        self.session.trust_env = proxy == "env"
        self.session.proxies.update(
            {k: v for k, v in requests_proxies(proxy).items() if v is not None}
        )
        self.requests = 0  # HTTP requests sent
        self.cache_hits = 0

    def close(self) -> None:
        self.session.close()

    # -- paths -----------------------------------------------------------------------------------

    def _folder(self, period: str) -> str:
        s = self.stream
        if s.kind == "aggTrade":
            return f"data/spot/{period}/aggTrades/{s.symbol}/{s.symbol}-aggTrades-"
        return f"data/spot/{period}/klines/{s.symbol}/{s.interval}/{s.symbol}-{s.interval}-"

    def daily_path(self, day: date) -> str:
        return f"{self._folder('daily')}{day:%Y-%m-%d}.zip"

    def monthly_path(self, year: int, month: int) -> str:
        return f"{self._folder('monthly')}{year:04d}-{month:02d}.zip"

    # -- files -----------------------------------------------------------------------------------

    def csv(self, path: str) -> Iterator[bytes] | None:
        """The CSV inside the archive file ``path``, verified, in chunks of whole lines (about
        :data:`CHUNK_BYTES` each); None when the archive does not have it. Raises
        :class:`ArchiveFileError` or :class:`HistoryError` (unreachable) before the first chunk."""
        name = path.rsplit("/", 1)[1]
        cached = None if self.cache is None else self.cache / path
        if cached is not None and cached.is_file():
            self.cache_hits += 1
            return self._unzip(cached, name)  # read from disk as it is unzipped
        checksum = self._get(path + ".CHECKSUM", 4096)
        if checksum is None:
            return None
        expected = _parse_checksum(checksum, name)
        if expected is None:
            raise ArchiveFileError(self.stream.name, name, "its .CHECKSUM file is malformed")
        data = self._get(path, MAX_FILE_BYTES)
        if data is None:
            return None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise ArchiveFileError(
                self.stream.name,
                name,
                f"SHA-256 {actual} does not match its .CHECKSUM ({expected}); not used",
            )
        chunks = self._unzip(data, name)
        if cached is not None:
            _store(cached, data)
        return chunks

    def _unzip(self, data: bytes | Path, name: str) -> Iterator[bytes]:
        member = name.removesuffix(".zip") + ".csv"
        try:
            archive = zipfile.ZipFile(data if isinstance(data, Path) else io.BytesIO(data))
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveFileError(self.stream.name, name, f"not a zip: {exc}") from None
        try:
            info = archive.getinfo(member)
            if info.file_size > MAX_CSV_BYTES:
                raise ArchiveFileError(self.stream.name, name, "its CSV is too large")
        except KeyError:
            archive.close()
            raise ArchiveFileError(self.stream.name, name, f"it does not hold {member}") from None
        except ArchiveFileError:
            archive.close()
            raise
        return self._chunks(archive, info, name)

    def _chunks(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str
    ) -> Iterator[bytes]:
        try:
            with archive, archive.open(info) as member:
                rest = b""
                while True:
                    block = member.read(CHUNK_BYTES)
                    if not block:
                        break
                    block = rest + block
                    cut = block.rfind(b"\n") + 1
                    rest = block[cut:]
                    if cut:
                        yield block[:cut]
                if rest:
                    yield rest
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ArchiveFileError(self.stream.name, name, f"cannot be unzipped: {exc}") from None

    def _get(self, path: str, limit: int) -> bytes | None:
        url = f"{self.base_url}/{path}"
        error = ""
        for attempt in range(self.attempts):
            if self.stop.is_set():
                break
            self.requests += 1
            try:
                with self.session.get(url, timeout=self.timeout, stream=True) as response:
                    if response.status_code in (403, 404):  # S3 answers 403 for some missing keys
                        return None
                    if response.status_code == 200:
                        body = bytearray()
                        for chunk in response.iter_content(1 << 20):
                            body += chunk
                            if len(body) > limit:
                                raise HistoryError(self.stream.name, f"{path}: over {limit} bytes")
                        return bytes(body)
                    error = f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {redact_text(str(exc), self.base_url)}"
            if attempt + 1 < self.attempts:
                delay = self.retry.delay(attempt, _rng)
                log.warning("GET %s failed (%s); retrying in %.2fs", redact_url(url), error, delay)
                if self.stop.wait(delay):
                    break
        if self.stop.is_set():
            raise HistoryError(self.stream.name, f"GET {redact_url(url)}: stopped")
        raise HistoryError(
            self.stream.name,
            f"archive unreachable: GET {redact_url(url)} failed {self.attempts} times ({error})",
        )


def _parse_checksum(data: bytes, name: str) -> str | None:
    try:
        found = _CHECKSUM.fullmatch(data.decode("ascii"))
    except UnicodeDecodeError:
        return None
    if found is None or found[2] != name:
        return None
    return found[1]


def _store(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a cache that cannot be written is only logged."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("could not cache %s: %s", path.name, exc)
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
