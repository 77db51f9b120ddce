"""Recording streams to gzip'ed JSON lines: :class:`Recorder` (``wsmanager record`` is
:mod:`wsmanager.cli.record`).

::

    with WSManager(url=..., idle_timeout=None) as manager, Recorder(
        manager, ["btcusdt@trade", "btcusdt@depth@100ms"], "day.jsonl.gz", rotate_bytes=100 << 20
    ) as recorder:
        recorder.wait(timeout=24 * 3600)

Callbacks only stamp and queue each message (a bounded queue: when full, messages are dropped,
counted, and the drop written to the recording); one writer thread encodes, compresses, writes and
rotates. The file format is described in :mod:`wsmanager.recording`; see ``docs/record-replay.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import redact_url, validate_stream_name
from .core.flow import plain_subscribe
from .core.state import Gap
from .errors import ManagerClosedError
from .manager import WSManager
from .net._closing import ClosesOnExit
from .recording import (
    RecordingWriter,
    StrPath,
    WallClock,
    encode_dropped,
    encode_ended,
    encode_gap,
    encode_message,
)

__all__ = ["Recorder", "RecorderStats"]

log = logging.getLogger("wsmanager")

FLUSH_BYTES = 1 << 20  # uncompressed bytes between flushes at most (and rotate_bytes, if less)

_MESSAGE, _GAP, _ENDED = 0, 1, 2
_Item = tuple[int, float, str, Any]  # (kind, receive time, stream, payload | Gap | reason)


@dataclass(frozen=True)
class RecorderStats:
    """What a recorder has done so far."""

    messages: int  # messages written (queued ones not yet)
    gaps: int  # gaps written
    dropped: int  # messages dropped because the queue was full
    pending: int  # messages queued, not yet written
    parts: tuple[Path, ...]  # the parts so far, in order
    bytes_written: int  # compressed bytes on disk (as of the last flush)


class Recorder(ClosesOnExit):
    """Records ``streams`` of ``manager`` into ``path`` (a ``.gz`` name) until :meth:`close`.

    ``rotate_bytes``: start a new part once the current one reaches this size on disk (None:
    one file). ``flush_interval``: seconds a written line may wait before it reaches the
    operating system (what a killed recorder loses, plus the queue). ``max_pending``: messages
    queued for the writer at most; more are dropped and counted. ``max_messages``: record that
    many messages, then ignore the rest (:meth:`wait` returns). ``overwrite``: replace an
    existing recording of that name (its parts too) instead of raising ``FileExistsError``.

    The manager is not closed by the recorder. Create it with ``idle_timeout=None`` for long
    recordings of quiet streams, or their idle cleanup ends them.
    """

    def __init__(
        self,
        manager: WSManager,
        streams: Iterable[str],
        path: StrPath,
        *,
        rotate_bytes: int | None = None,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        max_messages: int | None = None,
        overwrite: bool = False,
    ) -> None:
        names = list(dict.fromkeys(validate_stream_name(s) for s in _as_list(streams)))
        if not names:
            raise ValueError("streams: give at least one stream to record")
        if manager.destroyed:
            raise ManagerClosedError("the manager was destroyed: nothing to record")
        _check_positive("flush_interval", flush_interval)
        _check_int("max_pending", max_pending)
        if max_messages is not None:
            _check_int("max_messages", max_messages)
        self.streams = tuple(names)
        self.flush_interval = float(flush_interval)
        self.max_pending = max_pending
        self.max_messages = max_messages
        self._clock = WallClock()
        self._writer = RecordingWriter(
            path,
            streams=self.streams,
            url=redact_url(manager.config.url),
            rotate_bytes=rotate_bytes,
            overwrite=overwrite,
            clock=self._clock,
        )
        self._flush_bytes = min(FLUSH_BYTES, rotate_bytes or FLUSH_BYTES)
        # The queue: the callbacks append, the writer thread takes all. Guards the fields below.
        self._queue = threading.Condition(threading.Lock())
        self._pending: list[_Item] = []
        self._drops: dict[str, int] = {}
        self._accepted = 0
        self._closing = False
        # Counters of what was written (writer thread; read without a lock: ints).
        self._written = 0
        self._gaps = 0
        self._dropped = 0
        self.ended: dict[str, str] = {}  # stream -> why it ended (written to the recording too)
        self.error: BaseException | None = None  # a write error ended the recording
        self._finished = threading.Event()  # max_messages reached, or the writer stopped
        self._writer_thread = threading.Thread(
            target=self._write_loop, name="wsmanager-recorder", daemon=True
        )
        self._writer_thread.start()
        self._unsubscribes: list[Callable[[], None]] = []
        try:
            self._unsubscribes.append(manager.on_gap(self._on_gap))
            for name in self.streams:
                self._unsubscribes.append(
                    plain_subscribe(manager)(
                        name,
                        self._message_callback(name),
                        on_error=self._ended_callback(name),
                        on_complete=self._completed_callback(name),
                    )
                )
        except BaseException:
            self.close()
            raise

    @property
    def parts(self) -> list[Path]:
        """The parts written so far, in order."""
        return list(self._writer.parts)

    # -- the callbacks (manager threads): stamp and queue ----------------------------------------

    def _message_callback(self, stream: str) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            with self._queue:
                if self._closing:
                    return
                if self.max_messages is not None and self._accepted >= self.max_messages:
                    return
                if len(self._pending) >= self.max_pending:
                    self._drops[stream] = self._drops.get(stream, 0) + 1
                    return
                self._pending.append((_MESSAGE, self._clock(), stream, message))
                self._accepted += 1
                if len(self._pending) == 1:
                    self._queue.notify()
                reached = self._accepted == self.max_messages
            if reached:
                self._finished.set()

        return on_message

    def _on_gap(self, gap: Gap) -> None:
        if gap.stream in self.streams:
            self._queue_event((_GAP, 0.0, gap.stream, gap))

    def _ended_callback(self, stream: str) -> Callable[[Exception], None]:
        def on_error(error: Exception) -> None:
            self._on_ended(stream, f"{type(error).__name__}: {error}")

        return on_error

    def _completed_callback(self, stream: str) -> Callable[[], None]:
        def on_complete() -> None:
            self._on_ended(stream, "completed")

        return on_complete

    def _on_ended(self, stream: str, reason: str) -> None:
        self.ended[stream] = reason
        self._queue_event((_ENDED, 0.0, stream, reason))

    def _queue_event(self, item: _Item) -> None:
        """Queue a gap or an ending (never dropped: they are rare), stamped now."""
        with self._queue:
            if not self._closing:
                self._pending.append((item[0], self._clock(), item[2], item[3]))
                if len(self._pending) == 1:
                    self._queue.notify()

    # -- the writer thread -----------------------------------------------------------------------

    def _write_loop(self) -> None:
        writer = self._writer
        unflushed = 0  # uncompressed bytes written since the last flush
        flush_due: float | None = None  # monotonic time by which to flush
        try:
            while True:
                with self._queue:
                    while not (self._pending or self._drops or self._closing):
                        if flush_due is None:
                            self._queue.wait()
                        elif not self._queue.wait(max(0.0, flush_due - time.monotonic())):
                            break  # time to flush
                    batch, self._pending = self._pending, []
                    drops, self._drops = self._drops, {}
                    closing = self._closing
                if batch or drops:
                    unflushed = self._write(self._encode(batch, drops), unflushed)
                    if unflushed == 0:
                        flush_due = None
                    elif flush_due is None:
                        flush_due = time.monotonic() + self.flush_interval
                if closing:
                    break  # writer.close() below completes the part
                if flush_due is not None and time.monotonic() >= flush_due:
                    writer.flush()
                    unflushed, flush_due = 0, None
        except BaseException as exc:  # a write error (disk full, ...): the recording ends here
            self.error = exc
            log.error("recording to %s stopped: %s", writer.path, exc)
            with self._queue:
                self._closing = True
                self._pending = []
        finally:
            try:
                writer.close()
            except Exception as exc:
                self.error = self.error or exc
                log.error("closing the recording %s failed: %s", writer.path, exc)
            self._finished.set()

    def _write(self, lines: list[str], unflushed: int) -> int:
        """Write ``lines``, flushing (and so maybe rotating) each time ``flush_bytes`` of them
        are unflushed, however large the batch; return the bytes left unflushed."""
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            unflushed += len(line)  # ASCII: characters are bytes
            if unflushed >= self._flush_bytes:
                self._writer.write("".join(chunk))
                self._writer.flush()
                chunk, unflushed = [], 0
        if chunk:
            self._writer.write("".join(chunk))
        return unflushed

    def _encode(self, batch: list[_Item], drops: dict[str, int]) -> list[str]:
        lines = []
        for kind, t, stream, value in batch:
            if kind == _MESSAGE:
                lines.append(encode_message(t, stream, value))
                self._written += 1
            elif kind == _GAP:
                lines.append(encode_gap(t, value))
                self._gaps += 1
            else:
                lines.append(encode_ended(t, stream, value))
        if drops:
            t = self._clock()
            for stream, count in drops.items():
                lines.append(encode_dropped(t, stream, count))
                self._dropped += count
        return lines

    # -- public ----------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until ``max_messages`` were recorded or the recording stopped on an error;
        return whether that happened within ``timeout``."""
        return self._finished.wait(timeout)

    def stats(self) -> RecorderStats:
        with self._queue:
            pending = sum(item[0] == _MESSAGE for item in self._pending)
            dropped = self._dropped + sum(self._drops.values())
        return RecorderStats(
            messages=self._written,
            gaps=self._gaps,
            dropped=dropped,
            pending=pending,
            parts=tuple(self._writer.parts),
            bytes_written=self._writer.bytes_written,
        )

    def close(self) -> None:
        """Unsubscribe, write what is queued, finish the part and end the writer thread.
        Idempotent, and safe from a manager callback."""
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        with self._queue:
            self._closing = True
            self._queue.notify()
        if self._writer_thread is not threading.current_thread():
            self._writer_thread.join()


def _as_list(streams: Iterable[str]) -> list[str]:
    if isinstance(streams, str):
        return [streams]
    return list(streams)


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, not {value!r}")


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")


# -- wsmanager record ----------------------------------------------------------------------------
