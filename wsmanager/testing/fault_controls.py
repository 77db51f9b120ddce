"""The fault controls of :class:`~wsmanager.testing.FakeExchange` that act on what comes next:
the next handshakes (refused, closed at once, hung; the exchange down and up again) and the
REST API (errors, 429/418 with any ``Retry-After``, delays, stale or hostile snapshots)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from .rest import RestFaults
from .server import ExchangeServer, Handshake

__all__ = ["FaultControls", "check_count", "check_rate"]

T = TypeVar("T")


class FaultControls:
    """Mixed into ``FakeExchange``; every call runs on the exchange's loop thread."""

    _server: ExchangeServer

    def _run(self, function: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        raise NotImplementedError

    def _run_sync(self, function: Callable[[], T], timeout: float = 10) -> T:
        raise NotImplementedError

    # -- faults on the next handshakes -----------------------------------------------------------

    def reject(
        self,
        status: int,
        headers: dict[str, str] | None = None,
        body: str = "",
        *,
        stream: str | None = None,
    ) -> None:
        """Answer the next handshakes (naming ``stream``, or all) with HTTP ``status``."""
        self._set_handshake(
            stream, Handshake("reject", status, tuple((headers or {}).items()), body)
        )

    def accept_then_close(self, code: int = 1000, *, stream: str | None = None) -> None:
        """Complete the next handshakes, then close at once with ``code``."""
        self._set_handshake(stream, Handshake("accept_then_close", close_code=code))

    def hang_handshakes(self, *, stream: str | None = None) -> None:
        """Accept TCP, then never answer the handshake."""
        self._set_handshake(stream, Handshake("hang"))

    def accept_normally(self, *, stream: str | None = None) -> None:
        """Undo ``reject``/``accept_then_close``/``hang_handshakes`` (for ``stream``, or all)."""

        def run() -> None:
            if stream is None:
                self._server.handshakes.clear()
            else:
                self._server.handshakes.pop(stream, None)
            self._server.release_hung()

        self._run_sync(run)

    def stop_listening(self) -> None:
        """Close the listening socket and abort every connection (a crashed exchange)."""
        self._run(self._server.stop_listening)

    def start_listening(self) -> None:
        """Listen again, on the same port."""
        self._run(self._server.start_listening)

    def _set_handshake(self, stream: str | None, handshake: Handshake) -> None:
        self._run_sync(lambda: self._server.handshakes.__setitem__(stream, handshake))

    # -- REST faults ---------------------------------------------------------------------------

    def rest_errors(self, status: int = 500, count: int | None = 1) -> None:
        """Answer the next ``count`` REST requests (None: all, until :meth:`rest_normal`) with
        HTTP ``status`` and Binance's error JSON."""
        _check_status(status)
        _check_optional_count(count)

        def run() -> None:
            faults = self._server.rest.faults
            faults.error_status, faults.error_count = status, count

        self._run_sync(run)

    def rest_throttle(
        self, status: int = 429, retry_after: int | str = 1, count: int | None = 1
    ) -> None:
        """Answer the next ``count`` REST requests with ``status`` (429 or 418) and
        ``Retry-After: retry_after`` (seconds; a str is sent as it is: a hostile value such as
        ``"inf"`` or a date in the year 9999)."""
        if status not in (429, 418):
            raise ValueError(f"status must be 429 or 418, not {status!r}")
        if isinstance(retry_after, str):
            if not retry_after.isascii() or "\r" in retry_after or "\n" in retry_after:
                raise ValueError(f"retry_after must be one line of ASCII, not {retry_after!r}")
        elif isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError(f"retry_after must be an int >= 0 (seconds), not {retry_after!r}")
        _check_optional_count(count)

        def run() -> None:
            faults = self._server.rest.faults
            faults.throttle_status, faults.throttle_retry_after = status, retry_after
            faults.throttle_count = count

        self._run_sync(run)

    def rest_delay(self, seconds: float) -> None:
        """Answer every REST request ``seconds`` late."""
        check_rate(seconds, "seconds")
        self._run_sync(lambda: setattr(self._server.rest.faults, "delay", float(seconds)))

    def snapshot_lag(self, updates: int) -> None:
        """Serve depth snapshots ``updates`` update ids older than the stream: the true book as
        it was then (0: current)."""
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"updates must be an int >= 0, not {updates!r}")
        self._run_sync(lambda: setattr(self._server.rest.faults, "snapshot_lag", updates))

    def snapshot_ahead(self, updates: int) -> None:
        """Serve depth snapshots whose ``lastUpdateId`` is ``updates`` ids *ahead* of the stream
        (hostile: a book that trusts it stays frozen; 0: honest)."""
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"updates must be an int >= 0, not {updates!r}")
        self._run_sync(lambda: setattr(self._server.rest.faults, "snapshot_ahead", updates))

    def rest_normal(self) -> None:
        """Undo every REST fault."""
        self._run_sync(lambda: setattr(self._server.rest, "faults", RestFaults()))


def check_rate(value: object, name: str = "rate") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, not {value!r}")


def check_count(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, not {value!r}")


def _check_status(status: object) -> None:
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"status must be an HTTP status (100-599), not {status!r}")


def _check_optional_count(count: object) -> None:
    if count is not None:
        check_count("count", count)
