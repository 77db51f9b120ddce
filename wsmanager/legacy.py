"""The legacy ``binanceConnectionManager`` behaviour that WSManager replaces, kept for rollback.

One connection per ``subscribe`` call, a fixed reconnect delay, no sharing, callbacks on the
reader thread, and no metrics beyond a connection count. It still ends every thread it starts.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

import websocket

from .config import stream_url, validate_stream_name
from .transport import ConnectAborted, Deadline, open_socket, shutdown_quietly

__all__ = ["LegacyConnectionManager"]

log = logging.getLogger("wsmanager.legacy")

_HANDSHAKE_TIMEOUT = 10.0


class _LegacyConnection:
    def __init__(self, url: str, callback: Callable[[Any], object], delay: float) -> None:
        self.url = url
        self._callback = callback
        self._delay = delay
        self._stop = threading.Event()
        self.opened = threading.Event()
        self._lock = threading.Lock()  # guards _socket between the reader and stop()
        self._socket: socket.socket | None = None
        self.thread = threading.Thread(target=self._run, name="wsmanager-legacy", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._connect_and_read()
            if self._stop.wait(self._delay):  # the fixed delay the new manager replaces
                break

    def _connect_and_read(self) -> None:
        # Opening the socket ourselves is the one change from the old behaviour: it lets stop()
        # wake this thread at any point (websocket-client alone cannot cut a handshake short).
        try:
            sock = open_socket(
                self.url,
                deadline=Deadline.after(_HANDSHAKE_TIMEOUT),
                stop=self._stop,
                publish=lambda sock: None,
            )
        except (ConnectAborted, OSError) as exc:
            log.info("legacy: connect to %s failed: %r", self.url, exc)
            return
        with self._lock:
            self._socket = sock
        if self._stop.is_set():
            shutdown_quietly(sock)
        app = websocket.WebSocketApp(
            self.url,
            on_open=lambda app: self.opened.set(),
            on_message=self._on_message,
            socket=sock,
        )
        try:
            app.run_forever(ping_interval=20, ping_timeout=5)
        finally:
            with self._lock:
                self._socket = None
            sock.close()

    def _on_message(self, app: websocket.WebSocketApp, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            log.warning("legacy: skipped a message that is not JSON")
            return
        try:
            self._callback(message)
        except Exception:
            log.exception("legacy: a callback raised")

    def stop(self) -> None:
        """Non-blocking: wake the reader, which ends on its own."""
        self._stop.set()
        with self._lock:
            sock = self._socket
        if sock is not None:
            shutdown_quietly(sock)


class LegacyConnectionManager:
    """``subscribe(stream, callback) -> unsubscribe``, one connection per call."""

    implementation = "Legacy"

    def __init__(self, url: str, reconnect_delay: float = 5.0) -> None:
        self.url = url
        self.reconnect_delay = reconnect_delay
        self._lock = threading.Lock()  # guards _connections
        self._connections: set[_LegacyConnection] = set()
        self._retired: list[_LegacyConnection] = []

    def subscribe(self, stream: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        validate_stream_name(stream)
        connection = _LegacyConnection(stream_url(self.url, stream), callback, self.reconnect_delay)
        with self._lock:
            self._connections.add(connection)
        connection.thread.start()

        def unsubscribe() -> None:
            with self._lock:
                if connection not in self._connections:
                    return
                self._connections.discard(connection)
                self._retired.append(connection)
            connection.stop()

        return unsubscribe

    @property
    def connection_count(self) -> int:
        with self._lock:
            return len(self._connections)

    def wait_connected(self, timeout: float) -> bool:
        with self._lock:
            connections = list(self._connections)
        return all(c.opened.wait(timeout) for c in connections)

    def close(self) -> None:
        """Stop every connection and join their threads (except the calling thread)."""
        with self._lock:
            connections = list(self._connections) + self._retired
            self._retired.extend(self._connections)
            self._connections.clear()
        for connection in connections:
            connection.stop()
        for connection in connections:
            if connection.thread is not threading.current_thread():
                connection.thread.join()
