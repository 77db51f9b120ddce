"""What the exchange saw, readable from any thread: counters per stream, connections, control
requests, violations and REST requests.

The server's loop thread writes; tests read. One condition (``changed``) guards it all and is
notified on every change, so ``wait_until(predicate)`` re-checks exactly when something moved.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .rules import Violation

__all__ = ["ConnectionInfo", "ControlEntry", "Ledger", "RestRequest", "StreamStats"]


@dataclass(frozen=True)
class StreamStats:
    """What the exchange saw of one stream."""

    attempts: int = 0  # handshake requests whose URL named the stream
    accepted: int = 0  # times a connection started carrying it (URL or SUBSCRIBE)
    open: int = 0  # open connections carrying it now
    sent: int = 0  # messages sent (one per connection per message)


@dataclass(frozen=True)
class ConnectionInfo:
    """One WebSocket connection, as the exchange sees it."""

    id: int
    path: str
    streams: frozenset[str]  # now (at close, for a closed one)
    opened_at: float  # time.monotonic()
    client_messages: int  # client frames: text, binary, ping, pong
    closed_at: float | None = None
    close_code: int | None = None  # received from the client (None: none, or still open)


class ControlEntry(NamedTuple):
    """A client's control request and the exchange's answer (None: never answered)."""

    connection_id: int
    request: Any  # the decoded JSON object, or the text when it was not JSON
    answer: dict[str, Any] | None


class RestRequest(NamedTuple):
    at: float  # time.monotonic()
    path: str
    params: dict[str, str]
    status: int
    weight: int


@dataclass
class _Stream:
    attempts: int = 0
    accepted: int = 0
    open: int = 0
    sent: int = 0
    attempt_times: list[float] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)


@dataclass
class _Connection:
    id: int
    path: str
    streams: frozenset[str]
    opened_at: float
    message_times: list[float] = field(default_factory=list)
    closed_at: float | None = None
    close_code: int | None = None

    def info(self) -> ConnectionInfo:
        return ConnectionInfo(
            self.id,
            self.path,
            self.streams,
            self.opened_at,
            len(self.message_times),
            self.closed_at,
            self.close_code,
        )


class Ledger:
    """The exchange's records; every method is thread-safe."""

    def __init__(self) -> None:
        self.changed = threading.Condition(threading.RLock())
        self._streams: dict[str, _Stream] = {}
        self._connections: dict[int, _Connection] = {}
        self._attempt_times: list[float] = []
        self._control: list[ControlEntry] = []
        self._violations: list[Violation] = []
        self._rest: list[RestRequest] = []

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream()
        return stream

    # -- writes (the loop thread) ----------------------------------------------------------------

    def attempt(self, streams: Iterable[str]) -> None:
        now = time.monotonic()
        with self.changed:
            self._attempt_times.append(now)
            for name in streams:
                stream = self._stream(name)
                stream.attempts += 1
                stream.attempt_times.append(now)
            self.changed.notify_all()

    def opened(self, connection_id: int, path: str, streams: Iterable[str]) -> None:
        with self.changed:
            names = frozenset(streams)
            self._connections[connection_id] = _Connection(
                connection_id, path, names, time.monotonic()
            )
            for name in names:
                stream = self._stream(name)
                stream.accepted += 1
                stream.open += 1
            self.changed.notify_all()

    def carried(self, connection_id: int, added: Iterable[str], removed: Iterable[str]) -> None:
        """The connection's streams changed (SUBSCRIBE/UNSUBSCRIBE)."""
        with self.changed:
            connection = self._connections[connection_id]
            added, removed = set(added), set(removed)
            for name in added:
                stream = self._stream(name)
                stream.accepted += 1
                stream.open += 1
            for name in removed:
                self._stream(name).open -= 1
            connection.streams = (connection.streams | added) - removed
            self.changed.notify_all()

    def closed(self, connection_id: int, close_code: int | None) -> None:
        with self.changed:
            connection = self._connections[connection_id]
            connection.closed_at = time.monotonic()
            connection.close_code = close_code
            for name in connection.streams:
                stream = self._stream(name)
                stream.open -= 1
                stream.close_codes.append(close_code)
            self.changed.notify_all()

    def client_message(self, connection_id: int, at: float) -> None:
        with self.changed:
            self._connections[connection_id].message_times.append(at)
            self.changed.notify_all()

    def sent(self, counts: dict[str, int]) -> None:
        with self.changed:
            for name, count in counts.items():
                self._stream(name).sent += count
            self.changed.notify_all()

    def control(self, entry: ControlEntry) -> None:
        with self.changed:
            self._control.append(entry)
            self.changed.notify_all()

    def violation(self, violation: Violation) -> None:
        with self.changed:
            self._violations.append(violation)
            self.changed.notify_all()

    def rest(self, request: RestRequest) -> None:
        with self.changed:
            self._rest.append(request)
            self.changed.notify_all()

    # -- reads (any thread) ------------------------------------------------------------------

    def stats(self, name: str) -> StreamStats:
        with self.changed:
            stream = self._streams.get(name)
            if stream is None:
                return StreamStats()
            return StreamStats(stream.attempts, stream.accepted, stream.open, stream.sent)

    def attempt_times(self, name: str | None = None) -> list[float]:
        with self.changed:
            if name is None:
                return list(self._attempt_times)
            stream = self._streams.get(name)
            return list(stream.attempt_times) if stream else []

    def close_codes(self, name: str) -> list[int | None]:
        with self.changed:
            stream = self._streams.get(name)
            return list(stream.close_codes) if stream else []

    def total_attempts(self) -> int:
        with self.changed:
            return len(self._attempt_times)

    def open_connections(self) -> int:
        with self.changed:
            return sum(1 for c in self._connections.values() if c.closed_at is None)

    def connections(self, open_only: bool = True) -> list[ConnectionInfo]:
        with self.changed:
            return [
                c.info() for c in self._connections.values() if not open_only or c.closed_at is None
            ]

    def message_times(self, connection_id: int) -> list[float]:
        with self.changed:
            connection = self._connections.get(connection_id)
            if connection is None:
                raise KeyError(f"no connection with id {connection_id}")
            return list(connection.message_times)

    def control_log(self) -> list[ControlEntry]:
        with self.changed:
            return list(self._control)

    def violations(self) -> list[Violation]:
        with self.changed:
            return list(self._violations)

    def rest_requests(self) -> list[RestRequest]:
        with self.changed:
            return list(self._rest)

    def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.changed.wait(remaining)
        return True
