"""The drop-in legacy shim and the runtime feature flag between the two implementations.

``get_binance_connection().subscribe(stream, callback)`` routes to the current implementation.
Switching moves every live subscription: it subscribes on the new implementation first, waits
(up to ``handover_timeout``) for its connections to open, then unsubscribes from the old one. So
no message is missed while the new connection opens in time; messages that arrive in the overlap
may be delivered twice. Unsubscribe functions handed out before a switch keep working after it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..config import BINANCE_WS_URL, validate_stream_name
from ..core.state import ConnectionState
from ..manager import WSManager
from .manager import LegacyConnectionManager

__all__ = [
    "BinanceConnection",
    "ConnectionMigration",
    "connection_migration",
    "get_binance_connection",
]

Implementation = Literal["WSManager", "Legacy"]
DEFAULT_URL = BINANCE_WS_URL
_TRUE = {"true", "1", "yes"}


def implementation_from_env() -> Implementation:
    flag = os.environ.get("USE_NEW_WS_MANAGER", "").strip().lower()
    return "WSManager" if flag in _TRUE else "Legacy"


@dataclass(eq=False)
class _Handle:
    stream: str
    callback: Callable[[Any], object]
    unsubscribe: Callable[[], None]
    previous: Callable[[], None] | None = None  # on the old implementation, during a switch


class BinanceConnection:
    """The legacy ``binanceConnectionManager`` API over either implementation."""

    def __init__(
        self,
        url: str | None = None,
        implementation: Implementation | None = None,
        *,
        handover_timeout: float = 5.0,
        manager_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url or os.environ.get("BINANCE_WS_URL") or DEFAULT_URL
        self.handover_timeout = handover_timeout
        self._manager_options = manager_options or {}
        self._lock = threading.Lock()  # guards _current, _handles and the backends
        self._switching = threading.Lock()  # one switch at a time
        self._current: Implementation = implementation or implementation_from_env()
        self._handles: set[_Handle] = set()
        self._manager: WSManager | None = None
        self._legacy: LegacyConnectionManager | None = None

    def subscribe(self, stream: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        validate_stream_name(stream)
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        with self._lock:
            inner = self._backend(self._current).subscribe(stream, callback)
            handle = _Handle(stream, callback, inner)
            self._handles.add(handle)

        def unsubscribe() -> None:
            with self._lock:
                if handle not in self._handles:
                    return
                self._handles.discard(handle)
                handle.unsubscribe()
                if handle.previous is not None:
                    handle.previous()
                    handle.previous = None

        return unsubscribe

    def get_current_implementation(self) -> Implementation:
        return self._current

    def switch_to(self, target: Implementation) -> None:
        """Move every live subscription to ``target``; a no-op when it is current already."""
        if target not in ("WSManager", "Legacy"):
            raise ValueError(f"implementation must be 'WSManager' or 'Legacy', got {target!r}")
        with self._switching:
            with self._lock:
                if target == self._current:
                    return
                backend = self._backend(target)
                moved = list(self._handles)
                for handle in moved:  # previous is None here: _switching serialises switches
                    handle.previous = handle.unsubscribe
                    handle.unsubscribe = backend.subscribe(handle.stream, handle.callback)
                self._current = target
            if moved:
                self._wait_connected(backend)
            with self._lock:
                for handle in moved:
                    if handle.previous is not None:
                        handle.previous()
                        handle.previous = None

    def _wait_connected(self, backend: WSManager | LegacyConnectionManager) -> None:
        if isinstance(backend, LegacyConnectionManager):
            backend.wait_connected(self.handover_timeout)
            return
        connected = threading.Event()
        stop = backend.on_connection_status(
            lambda state: connected.set() if state is ConnectionState.CONNECTED else None
        )
        try:
            connected.wait(self.handover_timeout)
        finally:
            stop()

    def _backend(self, which: Implementation) -> WSManager | LegacyConnectionManager:
        if which == "WSManager":
            if self._manager is None or self._manager.destroyed:
                self._manager = WSManager(url=self.url, **self._manager_options)
            return self._manager
        if self._legacy is None:
            self._legacy = LegacyConnectionManager(self.url)
        return self._legacy

    def connection_count(self) -> int:
        """Open connections across both implementations (legacy counts its own)."""
        with self._lock:
            manager, legacy = self._manager, self._legacy
        count = manager.get_metrics().active_connections if manager else 0
        return count + (legacy.connection_count if legacy else 0)

    def close(self) -> None:
        """End every subscription and thread of both implementations."""
        with self._lock:
            self._handles.clear()
            manager, self._manager = self._manager, None
            legacy, self._legacy = self._legacy, None
        if manager is not None:
            manager.destroy()
        if legacy is not None:
            legacy.close()


class ConnectionMigration:
    """The runtime feature flag of the process-wide connection."""

    def enable_ws_manager(self) -> None:
        get_binance_connection().switch_to("WSManager")

    def enable_legacy(self) -> None:
        get_binance_connection().switch_to("Legacy")

    def get_current_implementation(self) -> Implementation:
        return get_binance_connection().get_current_implementation()


_singleton_lock = threading.Lock()
_singleton: BinanceConnection | None = None


def get_binance_connection() -> BinanceConnection:
    """The process-wide connection; its settings come from the environment on first use."""
    global _singleton
    with _singleton_lock:
        if _singleton is None:
            _singleton = BinanceConnection()
        return _singleton


def reset_binance_connection() -> None:
    """Close the process-wide connection; the next call creates a new one (for tests)."""
    global _singleton
    with _singleton_lock:
        connection, _singleton = _singleton, None
    if connection is not None:
        connection.close()


connection_migration = ConnectionMigration()
