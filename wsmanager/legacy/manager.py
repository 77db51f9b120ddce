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

from ..config import stream_url, validate_stream_name
from ..core.usercode import call_user
from ..net.deadline import Deadline
from ..net.transport import ConnectAborted, open_socket, shutdown_quietly

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
        # Nothing a message or a callback throws may end the reader: SystemExit would end this
        # thread silently, and RecursionError (deep JSON, a recursive callback) is survivable.
        try:
            message = json.loads(data)
        except BaseException as exc:  # ValueError, RecursionError, MemoryError...
            log.warning("legacy: skipped a message that is not JSON (%s)", type(exc).__name__)
            return
        call_user(self._callback, message, where="legacy", what="a callback", logger=log)

    def stop(self) -> None:
        """Non-blocking: wake the reader, which ends on its own."""
        self._stop.set()
        with self._lock:
            sock = self._socket
        if sock is not None:
            shutdown_quietly(sock)


class LegacyConnectionManager:
    """``subscribe(stream, callback) -> unsubscribe``, one connection per call.

    It keeps no finished connection: an unsubscribed one is held only while its thread is still
    ending, and forgotten at the next call once that thread is over.
    """

    implementation = "Legacy"

    def __init__(self, url: str, reconnect_delay: float = 5.0) -> None:
        self.url = url
        self.reconnect_delay = reconnect_delay
        self._lock = threading.Lock()  # guards _connections and _stopping
        self._connections: set[_LegacyConnection] = set()  # subscribed
        self._stopping: list[_LegacyConnection] = []  # unsubscribed, thread maybe still running

    def _forget_finished(self) -> None:
        """Drop stopped connections whose thread has ended (the caller holds ``_lock``)."""
        self._stopping = [c for c in self._stopping if c.thread.is_alive()]

    def subscribe(self, stream: str, callback: Callable[[Any], object]) -> Callable[[], None]:
        validate_stream_name(stream)
        connection = _LegacyConnection(stream_url(self.url, stream), callback, self.reconnect_delay)
        with self._lock:
            self._forget_finished()
            self._connections.add(connection)
            connection.thread.start()  # under the lock: close() never sees it unstarted

        def unsubscribe() -> None:
            with self._lock:
                if connection not in self._connections:
                    return
                self._connections.discard(connection)
                self._forget_finished()
                self._stopping.append(connection)
            connection.stop()

        return unsubscribe

    @property
    def connection_count(self) -> int:
        with self._lock:
            self._forget_finished()
            return len(self._connections)

    def wait_connected(self, timeout: float) -> bool:
        with self._lock:
            connections = list(self._connections)
        return all(c.opened.wait(timeout) for c in connections)

    def close(self) -> None:
        """Stop every connection, join their threads (except the calling thread), keep none."""
        with self._lock:
            connections = list(self._connections) + self._stopping
            self._connections.clear()
            self._stopping = []
        for connection in connections:
            connection.stop()
        for connection in connections:
            if connection.thread is not threading.current_thread():
                connection.thread.join()
