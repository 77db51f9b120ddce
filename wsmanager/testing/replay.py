"""Replaying a recording (:mod:`wsmanager.recording`) into the fake exchange, with its timing.

:meth:`FakeExchange.replay <wsmanager.testing.FakeExchange.replay>` starts a :class:`Replay`:
one thread reads the recording and hands each message to the exchange's loop at
``start + (t - first t) / speed`` on the monotonic clock (scheduled against the start, so a long
replay does not drift), in the recorded order, as recorded (its own sequence numbers). Messages
due together go in one hand-over. With ``loop=True`` the recording starts again after its end,
its sequence numbers shifted on each pass so the streams continue without duplicates or gaps.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..net._closing import ClosesOnExit
from ..recording import (
    MAX_LINE_BYTES,
    Dropped,
    GapEntry,
    Message,
    Reader,
    RecordingError,
    StrPath,
    recorded_streams,
)
from .market import dumps
from .payloads import stream_kind


class _Exchange(Protocol):
    """What :func:`replay_for_clients` needs of a :class:`~wsmanager.testing.FakeExchange`."""

    def open_connections(self) -> int: ...

    def stats(self, stream: str) -> Any: ...

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool: ...

    def replay(self, paths: Any, speed: float = 1.0, *, loop: bool = False) -> Replay: ...


__all__ = ["Replay", "ReplayProgress", "check_speed", "replay_for_clients"]

SETTLE = 1.0  # seconds the command line waits for a client to subscribe the other streams
MAX_BATCH = 1000  # messages handed to the exchange's loop at once, at most
Send = Callable[[list[tuple[str, str]]], int]  # [(stream, text)] -> connections reached

# Sequence fields shifted on each pass of a looped replay: (first, last, others) per stream kind.
_SEQUENCES: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "trade": (("t", "t", ()),),
    "aggTrade": (("a", "a", ()), ("f", "l", ())),
    "depth": (("U", "u", ("pu",)),),
    "bookTicker": (("u", "u", ()),),
    "bestBidAsk": (("u", "u", ()),),
    "partial_depth": (("lastUpdateId", "lastUpdateId", ()),),
}


@dataclass(frozen=True)
class ReplayProgress:
    """Where a replay is."""

    messages: int  # payloads published (each to every connection carrying its stream)
    reached: int  # connection writes (a message to 2 connections: 2)
    gaps: int  # gaps the recording holds (passed so far)
    dropped: int  # messages the recorder had dropped (passed so far)
    loops: int  # complete passes
    position: float  # recorded seconds replayed in the current pass
    max_lateness: float  # seconds the latest hand-over came after its time
    truncated_parts: tuple[str, ...]  # parts that ended early (a killed recorder)
    finished: bool  # ended: every message sent, stopped, or failed


def check_speed(speed: object) -> None:
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0:
        raise ValueError(f"speed must be a number > 0 (math.inf: no waiting), not {speed!r}")


class _Shifter:
    """The sequence numbers of each stream in the first pass, and the shift of a later one."""

    def __init__(self) -> None:
        self.ranges: dict[tuple[str, int], list[int]] = {}  # (stream, group) -> [first, last]

    def observe(self, stream: str, data: Any) -> None:
        if not isinstance(data, dict):
            return
        for index, (first, last, _) in enumerate(_SEQUENCES.get(stream_kind(stream), ())):
            low, high = data.get(first), data.get(last)
            if type(low) is not int or type(high) is not int:
                continue
            known = self.ranges.get((stream, index))
            if known is None:
                self.ranges[(stream, index)] = [low, high]
            else:
                known[0], known[1] = min(known[0], low), max(known[1], high)

    def shift(self, stream: str, data: Any, passes: int) -> Any:
        if not isinstance(data, dict):
            return data
        shifted = None
        for index, (first, last, others) in enumerate(_SEQUENCES.get(stream_kind(stream), ())):
            known = self.ranges.get((stream, index))
            if known is None:
                continue
            offset = passes * (known[1] - known[0] + 1)
            for key in (first, last, *others):
                if type(data.get(key)) is int:
                    shifted = shifted if shifted is not None else dict(data)
                    shifted[key] = data[key] + offset
        return shifted if shifted is not None else data


class Replay(ClosesOnExit):
    """A running replay: :meth:`wait`, :meth:`stop` (also ``close``, and a ``with`` block),
    :meth:`progress`. Made by :meth:`FakeExchange.replay`."""

    def __init__(
        self,
        paths: StrPath | Iterable[StrPath],
        send: Send,
        *,
        speed: float = 1.0,
        loop: bool = False,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        check_speed(speed)
        if isinstance(paths, (str, bytes)) or not isinstance(paths, Iterable):
            paths = [paths]
        self._paths = list(paths)
        self._max_line = max_line_bytes
        Reader(self._paths, max_line_bytes=max_line_bytes)  # the recording is there, now
        self.speed = float(speed)
        self.loop = bool(loop)
        self._send = send
        self._stop = threading.Event()
        self._ended = threading.Event()
        self.error: BaseException | None = None
        # Progress: written by the replay thread only; read as a whole under the lock.
        self._progress_lock = threading.Lock()
        self._progress = ReplayProgress(0, 0, 0, 0, 0, 0.0, 0.0, (), False)
        self._thread = threading.Thread(target=self._run, name="wsmanager-replay", daemon=True)
        self._thread.start()

    # -- public ----------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the replay ended (everything sent, or stopped); return whether it did
        within ``timeout``. Raises the error that ended it, if any (e.g. a corrupt line)."""
        ended = self._ended.wait(timeout)
        if ended and self.error is not None:
            raise self.error
        return ended

    def stop(self) -> None:
        """End the replay now (what was sent stays sent). Idempotent."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def close(self) -> None:
        self.stop()

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    def progress(self) -> ReplayProgress:
        with self._progress_lock:
            return self._progress

    # -- the replay thread -----------------------------------------------------------------------

    def _run(self) -> None:
        state = _PassState()
        try:
            while not self._stop.is_set():
                complete = self._one_pass(state)
                if not complete or not self.loop or state.messages_this_pass == 0:
                    break
                if state.passes == 0:
                    span = state.last_t - (state.first_t or 0.0)
                    mean = span / (state.messages_this_pass - 1) if span > 0 else 1.0
                    state.period = span + mean  # the next pass starts one mean interval later
                state.passes += 1
        except BaseException as exc:
            self.error = exc
        finally:
            self._report(state, finished=True)
            self._ended.set()

    def _one_pass(self, state: _PassState) -> bool:
        """Send the recording once; False when stopped before its end."""
        reader = Reader(self._paths, max_line_bytes=self._max_line)
        state.messages_this_pass = 0
        batch: list[tuple[str, str]] = []
        batch_due = 0.0
        complete = True
        try:
            for entry in reader:
                if isinstance(entry, GapEntry):
                    state.gaps += 1
                    continue
                if isinstance(entry, Dropped):
                    state.dropped += entry.count
                    continue
                if not isinstance(entry, Message):
                    continue
                if state.first_t is None:
                    state.first_t = entry.t
                if state.passes == 0:
                    state.shifter.observe(entry.stream, entry.data)
                    state.last_t = max(state.last_t, entry.t)
                state.messages_this_pass += 1
                state.position = entry.t - state.first_t
                due = state.start + (state.passes * state.period + state.position) / self.speed
                now = time.monotonic()
                if due > now or len(batch) >= MAX_BATCH:
                    self._publish(state, batch, batch_due)
                    if due > now and self._stop.wait(due - now):
                        complete = False
                        break
                data = entry.data
                if state.passes:
                    data = state.shifter.shift(entry.stream, data, state.passes)
                if not batch:
                    batch_due = due
                batch.append((entry.stream, dumps(data)))
        except RecordingError:  # a bad line: what came before it still goes out
            self._publish(state, batch, batch_due)
            raise
        self._publish(state, batch, batch_due)
        for part in reader.truncated_parts:
            if str(part) not in state.truncated:
                state.truncated.append(str(part))
        if complete:
            state.loops += 1
        return complete

    def _publish(self, state: _PassState, batch: list[tuple[str, str]], due: float) -> None:
        if batch:
            state.reached += self._send(batch)
            state.messages += len(batch)
            state.lateness = max(state.lateness, time.monotonic() - due)
            batch.clear()
        self._report(state, finished=False)

    def _report(self, state: _PassState, finished: bool) -> None:
        progress = ReplayProgress(
            messages=state.messages,
            reached=state.reached,
            gaps=state.gaps,
            dropped=state.dropped,
            loops=state.loops,
            position=state.position,
            max_lateness=state.lateness,
            truncated_parts=tuple(state.truncated),
            finished=finished,
        )
        with self._progress_lock:
            self._progress = progress


@dataclass
class _PassState:
    """The replay thread's own state (never shared)."""

    start: float = field(default_factory=time.monotonic)
    shifter: _Shifter = field(default_factory=_Shifter)
    first_t: float | None = None
    last_t: float = 0.0
    period: float = 0.0  # recorded seconds per pass (loop)
    passes: int = 0  # the pass being sent (0: the first)
    loops: int = 0  # complete passes
    position: float = 0.0
    messages_this_pass: int = 0
    messages: int = 0
    reached: int = 0
    gaps: int = 0
    dropped: int = 0
    lateness: float = 0.0
    truncated: list[str] = field(default_factory=list)


def replay_for_clients(
    exchange: _Exchange,
    paths: list[str],
    *,
    speed: float,
    loop: bool,
    stop: threading.Event,
    out: Callable[[str], object] | None = None,
) -> bool:
    """``wsmanager fake-exchange --replay``: wait until clients carry every recorded stream, or
    ``SETTLE`` seconds after they carry one (any open connection, for a recording without a
    header), replay, report the end.
    False when the recording could not be read."""
    if out is None:
        out = _print_now
    try:
        check_speed(speed)
        streams = recorded_streams(paths)
    except (ValueError, OSError) as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return False
    names = ", ".join(streams) or "its streams"
    out(
        f"replay of {' '.join(paths)} ({names}) at speed {speed:g} starts when a client carries "
        f"its streams (or {SETTLE:g} s after it carries one)"
    )

    def carried(every: bool) -> bool:
        if not streams:
            return exchange.open_connections() > 0
        test = all if every else any
        return test(exchange.stats(stream).open for stream in streams)

    while not exchange.wait_until(lambda: carried(False), timeout=0.5):
        if stop.is_set():
            return True
    exchange.wait_until(lambda: carried(True), timeout=SETTLE)  # let the client subscribe the rest
    started = time.monotonic()
    with exchange.replay(paths, speed, loop=loop) as replay:
        out("replay started")
        try:
            while not replay.wait(0.5):
                if stop.is_set():
                    return True
        except (ValueError, OSError, EOFError) as exc:
            print(f"wsmanager: the replay failed: {exc}", file=sys.stderr)
            return False
    done = replay.progress()
    truncated = "".join(f"; {part} was cut short" for part in done.truncated_parts)
    out(
        f"replay finished: {done.messages} message(s) in {time.monotonic() - started:.1f}s, "
        f"{done.gaps} gap(s) in the recording{truncated}"
    )
    return True


def _print_now(line: str) -> None:
    print(line, flush=True)
