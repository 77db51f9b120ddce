"""The recording file format: gzip'ed JSON lines in size-rotated parts (writing and reading).

A recording is one or more *parts*: ``day.jsonl.gz`` first, then ``day.1.jsonl.gz``,
``day.2.jsonl.gz``, ... (the part number goes before ``.jsonl.gz``, or before ``.gz``). Each part
is a complete gzip file of lines, each a JSON object with the receive time ``t`` (epoch seconds)
and one kind:

- ``{"t", "stream", "data"}``: a message, ``data`` being the payload as subscribers got it;
- ``{"t", "gap": {"stream", "expected", "received", "after_reconnect"}}``: the manager saw a
  jump in the stream's sequence (the recording has a hole there, as the feed had);
- ``{"t", "dropped": {"stream", "count"}}``: the recorder itself dropped ``count`` messages
  (its queue was full);
- ``{"t", "ended": {"stream", "reason"}}``: the stream ended (failed or completed);
- ``{"t", "recording": {"format", "part", "streams", "url"}}``: the first line of every part.

Readers skip kinds they do not know. The writer flushes the compressor (``Z_SYNC_FLUSH``) so a
killed writer leaves a part whose complete lines all read back; :class:`Reader` reads such a
truncated part up to its last complete line and says so (``truncated_parts``).
"""

from __future__ import annotations

import gzip
import heapq
import json
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .core.state import Gap

__all__ = [
    "FORMAT",
    "MAX_LINE_BYTES",
    "Dropped",
    "Ended",
    "Entry",
    "GapEntry",
    "Header",
    "Message",
    "Reader",
    "RecordingError",
    "RecordingWriter",
    "WallClock",
    "encode_dropped",
    "encode_ended",
    "encode_gap",
    "encode_message",
    "existing_parts",
    "part_path",
    "read",
    "recorded_streams",
]

FORMAT = 1
# The longest line a reader takes (a recorded message is at most max_message_size, 16 MiB by
# default, plus its JSON): a longer one is a RecordingError, never a whole line in memory.
MAX_LINE_BYTES = 64 * 2**20

StrPath = str | os.PathLike[str]


class RecordingError(ValueError):
    """A recording that cannot be read: a bad line (named by file and line number), a corrupt
    part, or a missing file."""


# -- entries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A recorded message: ``data`` is the payload as subscribers of ``stream`` got it."""

    t: float
    stream: str
    data: Any


@dataclass(frozen=True)
class GapEntry:
    """The manager reported ``gap`` (the recording has the same hole the feed had)."""

    t: float
    gap: Gap


@dataclass(frozen=True)
class Dropped:
    """The recorder dropped ``count`` messages of ``stream`` (its queue was full)."""

    t: float
    stream: str
    count: int


@dataclass(frozen=True)
class Ended:
    """``stream`` ended: failed for good, or completed (the manager was destroyed)."""

    t: float
    stream: str
    reason: str


@dataclass(frozen=True)
class Header:
    """The first line of each part."""

    t: float
    part: int
    streams: tuple[str, ...]
    url: str


Entry = Message | GapEntry | Dropped | Ended | Header


# -- encoding ------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def encode_message(t: float, stream: str, data: Any) -> str:
    return f'{{"t":{t:.6f},"stream":{_dumps(stream)},"data":{_dumps(data)}}}\n'


def encode_gap(t: float, gap: Gap) -> str:
    body = {
        "stream": gap.stream,
        "expected": gap.expected,
        "received": gap.received,
        "after_reconnect": gap.after_reconnect,
    }
    return f'{{"t":{t:.6f},"gap":{_dumps(body)}}}\n'


def encode_dropped(t: float, stream: str, count: int) -> str:
    return f'{{"t":{t:.6f},"dropped":{_dumps({"stream": stream, "count": count})}}}\n'


def encode_ended(t: float, stream: str, reason: str) -> str:
    return f'{{"t":{t:.6f},"ended":{_dumps({"stream": stream, "reason": reason})}}}\n'


def _encode_header(t: float, part: int, streams: tuple[str, ...], url: str) -> str:
    body = {"format": FORMAT, "part": part, "streams": list(streams), "url": url}
    return f'{{"t":{t:.6f},"recording":{_dumps(body)}}}\n'


class WallClock:
    """Epoch seconds that never go back: the wall clock at creation, advanced by the monotonic
    clock (a clock step during a recording does not reorder or stretch it)."""

    def __init__(self) -> None:
        self._wall = time.time()
        self._mono = time.monotonic()

    def __call__(self) -> float:
        return self._wall + (time.monotonic() - self._mono)


# -- parts ---------------------------------------------------------------------------------------


def part_path(path: StrPath, number: int) -> Path:
    """Part ``number`` of the recording ``path`` (0: ``path`` itself): ``day.jsonl.gz`` ->
    ``day.<number>.jsonl.gz``; ``x.gz`` -> ``x.<number>.gz``."""
    base = Path(path)
    if number == 0:
        return base
    name = base.name
    suffix = ".jsonl.gz" if name.endswith(".jsonl.gz") else ".gz"
    if not name.endswith(suffix) or len(name) == len(suffix):
        raise ValueError(f"a recording's name must end in .gz (e.g. day.jsonl.gz), not {name!r}")
    return base.with_name(f"{name[: -len(suffix)]}.{number}{suffix}")


def existing_parts(path: StrPath) -> list[Path]:
    """The parts of the recording ``path`` on disk, in order (up to the first one missing)."""
    found = []
    number = 0
    while (part := part_path(path, number)).exists():
        found.append(part)
        number += 1
    return found


class RecordingWriter:
    """Writes lines to the parts of one recording; not thread-safe (one writer thread).

    ``flush()`` pushes everything written so far to the operating system as complete gzip
    data; then, with ``rotate_bytes``, a part that has reached that size (compressed, on disk)
    is closed and the next begins. Each part starts with a header line.
    """

    def __init__(
        self,
        path: StrPath,
        *,
        streams: Iterable[str],
        url: str,
        rotate_bytes: int | None = None,
        overwrite: bool = False,
        clock: Callable[[], float] = time.time,
        compresslevel: int = 6,
    ) -> None:
        if rotate_bytes is not None and (
            isinstance(rotate_bytes, bool) or not isinstance(rotate_bytes, int) or rotate_bytes < 1
        ):
            raise ValueError(f"rotate_bytes must be an int >= 1 or None, not {rotate_bytes!r}")
        self.path = Path(path)
        part_path(self.path, 1)  # checks the name
        old = existing_parts(self.path)
        if old and not overwrite:
            raise FileExistsError(
                f"{self.path} exists ({len(old)} part(s)): choose another name, or overwrite"
            )
        for part in old:
            part.unlink()
        self.streams = tuple(streams)
        self.url = url
        self.rotate_bytes = rotate_bytes
        self.parts: list[Path] = []
        self.closed_bytes = 0  # compressed bytes of the parts already closed
        self._clock = clock
        self._level = compresslevel
        self._raw: IO[bytes] | None = None
        self._gzip: gzip.GzipFile | None = None
        self._open_part()

    def _open_part(self) -> None:
        path = part_path(self.path, len(self.parts))
        self._raw = open(path, "xb")  # noqa: SIM115 - closed in _close_part
        self._gzip = gzip.GzipFile(
            filename=path.name, fileobj=self._raw, mode="wb", compresslevel=self._level
        )
        self.parts.append(path)
        header = _encode_header(self._clock(), len(self.parts) - 1, self.streams, self.url)
        self._gzip.write(header.encode())
        self._gzip.flush(zlib.Z_SYNC_FLUSH)  # on disk at once: even a part killed early reads
        self._raw.flush()

    def _close_part(self) -> None:
        gz, raw = self._gzip, self._raw
        self._gzip = self._raw = None
        if gz is not None and raw is not None:
            try:
                gz.close()
            finally:
                self.closed_bytes += raw.tell()
                raw.close()

    def write(self, text: str) -> None:
        """Write ``text`` (whole lines)."""
        assert self._gzip is not None, "the writer is closed"
        self._gzip.write(text.encode())

    def part_bytes(self) -> int:
        """Compressed bytes of the current part on disk (as of the last flush)."""
        return self._raw.tell() if self._raw is not None else 0

    @property
    def bytes_written(self) -> int:
        return self.closed_bytes + self.part_bytes()

    def flush(self) -> None:
        """Complete gzip data for every line written so far reaches the OS; then rotate if the
        part has reached ``rotate_bytes``."""
        if self._gzip is None or self._raw is None:
            return
        self._gzip.flush(zlib.Z_SYNC_FLUSH)
        self._raw.flush()
        if self.rotate_bytes is not None and self._raw.tell() >= self.rotate_bytes:
            self._close_part()
            self._open_part()

    def close(self) -> None:
        """Finish the current part (a complete gzip file). Idempotent."""
        self._close_part()


# -- reading -------------------------------------------------------------------------------------


def _entry(document: Any) -> Entry | None:
    """The entry a decoded line holds; None for a kind this reader does not know."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    t = document.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise ValueError('no number "t"')
    if "data" in document:
        stream = document.get("stream")
        if not isinstance(stream, str):
            raise ValueError('a message without a string "stream"')
        return Message(t, stream, document["data"])
    if "gap" in document:
        g = document["gap"]
        expected, received = int(g["expected"]), int(g["received"])
        return GapEntry(t, Gap(str(g["stream"]), expected, received, bool(g["after_reconnect"])))
    if "dropped" in document:
        d = document["dropped"]
        return Dropped(t, str(d["stream"]), int(d["count"]))
    if "ended" in document:
        e = document["ended"]
        return Ended(t, str(e["stream"]), str(e["reason"]))
    if "recording" in document:
        h = document["recording"]
        return Header(t, int(h["part"]), tuple(h["streams"]), str(h.get("url", "")))
    return None


class Reader:
    """The entries of one or more recordings, each read part after part; several recordings are
    merged by ``t``. Iterate once. A part cut short (a killed recorder) is read up to its last
    complete line and listed in ``truncated_parts``. A line over ``max_line_bytes`` is a
    :class:`RecordingError` naming the file and the line (what came before it is read)."""

    def __init__(
        self, paths: StrPath | Iterable[StrPath], *, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int):
            raise TypeError(f"max_line_bytes must be an int, not {type(max_line_bytes).__name__}")
        if max_line_bytes < 1:
            raise ValueError(f"max_line_bytes must be >= 1, got {max_line_bytes}")
        self.max_line_bytes = max_line_bytes
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no recording given")
        self.parts: list[list[Path]] = []  # per recording
        seen: set[Path] = set()
        for path in self.paths:
            if not path.exists():
                raise FileNotFoundError(f"no recording at {path}")
            parts = [p for p in existing_parts(path) if p.resolve() not in seen]
            seen.update(p.resolve() for p in parts)
            if parts:  # (empty: each part was named already, e.g. day.jsonl.gz day.1.jsonl.gz)
                self.parts.append(parts)
        self.truncated_parts: list[Path] = []
        self.lines = 0

    def __iter__(self) -> Iterator[Entry]:
        streams = [self._read_parts(parts) for parts in self.parts]
        if len(streams) == 1:
            return streams[0]
        return heapq.merge(*streams, key=lambda entry: entry.t)

    def _read_parts(self, parts: list[Path]) -> Iterator[Entry]:
        for part in parts:
            yield from self._read_part(part)

    def _read_part(self, part: Path) -> Iterator[Entry]:
        number = 0
        if part.stat().st_size == 0:  # killed as it was created
            self.truncated_parts.append(part)
            return
        limit = self.max_line_bytes
        with gzip.open(part, "rb") as lines:
            try:
                while line := lines.readline(limit + 1):  # "\n" included: limit + 1 bytes
                    number += 1
                    if len(line) > limit:
                        raise RecordingError(
                            f"{part}:{number}: a line over {limit} bytes (max_line_bytes)"
                        )
                    if not line.endswith(b"\n"):
                        self.truncated_parts.append(part)  # a trailer-less end mid-line
                        return
                    self.lines += 1
                    try:
                        entry = _entry(json.loads(line))
                    except (ValueError, KeyError, TypeError) as exc:
                        raise RecordingError(f"{part}:{number}: {exc}") from None
                    if entry is not None:
                        yield entry
            except EOFError:  # no gzip trailer: the writer was killed; complete lines are in
                self.truncated_parts.append(part)
            except (OSError, zlib.error) as exc:
                raise RecordingError(f"{part}: after line {number}: {exc}") from exc


def read(paths: StrPath | Iterable[StrPath], *, max_line_bytes: int = MAX_LINE_BYTES) -> Reader:
    """The entries of the recording(s) ``paths`` (each with all its parts), in order."""
    return Reader(paths, max_line_bytes=max_line_bytes)


def recorded_streams(paths: StrPath | Iterable[StrPath]) -> list[str]:
    """The streams the recording(s) name in their first header line (in order, once)."""
    found: dict[str, None] = {}
    reader = Reader(paths)
    for parts in reader.parts:
        with gzip.open(parts[0], "rb") as lines:
            try:
                first = lines.readline(MAX_LINE_BYTES + 1)
                entry = _entry(json.loads(first)) if first.endswith(b"\n") else None
            except (EOFError, OSError, zlib.error, ValueError, KeyError, TypeError):
                entry = None
        if isinstance(entry, Header):
            found.update(dict.fromkeys(entry.streams))
    return list(found)
