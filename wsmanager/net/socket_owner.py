"""What a connection's reader thread shares with the threads that stop or wake it.

A :class:`SocketOwner` holds the stop flag, the socket (published the moment it exists, so
:meth:`SocketOwner.stop` can cut a connect, a proxy or TLS handshake or an upgrade short),
whether the WebSocket is open (then ``stop`` lets the read loop close with a close frame), and
the wake-up pipe its read loop polls. Reader and stoppers meet only here, under one lock
(``connection`` in :mod:`wsmanager.core._locks`). Market connections
(:class:`wsmanager.net.connection.Connection`) and user data connections
(:class:`wsmanager.userdata.connection.WsApiConnection`) are both one.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from ..core._locks import make_lock
from .transport import shutdown_quietly

__all__ = ["SocketOwner"]


class SocketOwner:
    """The stop flag, the published socket and the wake-up pipe of one reader thread."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._lock = make_lock("connection")  # guards _socket and _open (reader vs stop())
        self._socket: socket.socket | None = None
        self._open = False  # the handshake is done: stop() lets the read loop close cleanly
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- from any thread (never blocks) ----------------------------------------------------------

    def stop(self) -> None:
        """End the reader thread: a clean close (close frame 1000, a short wait) when the
        WebSocket is open, else cut a wait, a connect or a handshake short."""
        self._stop.set()
        with self._lock:
            sock, is_open = self._socket, self._open
        if is_open or self._upgraded():
            self.wake()
        else:
            shutdown_quietly(sock)

    def kill(self) -> None:
        """Like :meth:`stop`, without the close handshake: cut the socket."""
        self._stop.set()
        self._cut()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    # -- for the reader thread and its read loop -------------------------------------------------

    def wake_fd(self) -> int:
        return self._wake_r.fileno()

    def drain_wake(self) -> None:
        with contextlib.suppress(OSError):
            while self._wake_r.recv(4096):
                pass

    def _publish(self, sock: socket.socket | None) -> None:
        """The socket of the attempt in progress (None: it is gone)."""
        with self._lock:
            self._socket = sock
        if sock is not None and self._stop.is_set():
            shutdown_quietly(sock)  # stop() ran before the socket was published

    def _set_open(self, is_open: bool) -> None:
        with self._lock:
            self._open = is_open

    def _cut(self) -> None:
        """Shut the current socket down (the read loop sees the end at once)."""
        with self._lock:
            sock = self._socket
        shutdown_quietly(sock)

    def _upgraded(self) -> bool:
        """The upgrade answer said 101 though the WebSocket is not marked open yet."""
        return False

    def _close_wake(self) -> None:
        """At the end of the reader thread."""
        with contextlib.suppress(OSError):
            self._wake_r.close()
            self._wake_w.close()
