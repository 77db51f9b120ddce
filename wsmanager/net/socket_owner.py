"""What a connection's reader thread shares with the threads that stop or wake it.

A :class:`SocketOwner` holds the stop flag, the socket (published the moment it exists, so
:meth:`SocketOwner.stop` can cut a connect, a proxy or TLS handshake or an upgrade short),
whether the WebSocket is open (then ``stop`` lets the read loop close with a close frame), and
the wake-up pipe its read loop polls. Reader and stoppers meet only here, under one lock
(``connection`` in :mod:`wsmanager.core._locks`). It also has the steps of one connection
attempt that every kind takes alike: open the socket (:meth:`SocketOwner._connect`), run
websocket-client on it (:meth:`SocketOwner._run_app`), and at the upgrade install our read loop
and frame reader (:meth:`SocketOwner._install`). Market connections
(:class:`wsmanager.net.connection.Connection`) and user data connections
(:class:`wsmanager.userdata.connection.WsApiConnection`) are both one.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from typing import Any

from ..config import WSManagerConfig
from ..core._locks import make_lock
from ..errors import ConnectionFailedError, HandshakeFailedError
from . import _wsclient
from .boundary import Attempt
from .deadline import Deadline
from .guard import SocketGuard
from .transport import ConnectAborted, open_socket, shutdown_quietly

__all__ = ["SocketOwner"]

log = logging.getLogger("wsmanager")


class SocketOwner:
    """The stop flag, the published socket and the wake-up pipe of one reader thread."""

    config: WSManagerConfig
    _ssl_context: ssl.SSLContext | None

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

    # -- the steps of one connection attempt (reader thread) ---------------------------------------

    def _connect(self, url: str, attempt: Attempt) -> tuple[socket.socket, SocketGuard] | None:
        """Connect to ``url`` (TCP, proxy, TLS) within the handshake timeout, the socket
        published as it exists; None when stopped, or failed (``attempt.error`` says)."""
        deadline = Deadline.after(self.config.handshake_timeout)
        try:
            sock = open_socket(
                url,
                deadline=deadline,
                stop=self._stop,
                publish=self._publish,
                ssl_context=self._ssl_context,
                proxy=self.config.proxy,
            )
        except ConnectAborted:
            return None
        except ConnectionFailedError as exc:
            attempt.error = exc
            return None
        return sock, SocketGuard(sock, deadline)

    def _run_app(
        self, app: _wsclient.App, sock: socket.socket, guard: SocketGuard, attempt: Attempt
    ) -> None:
        """websocket-client on the open socket until the connection ends; then the socket is
        closed and unpublished, and an upgrade that never completed is the attempt's error."""
        try:
            app.run_forever(ping_interval=0, ping_timeout=None, skip_utf8_validation=True)
        finally:
            self._set_open(False)
            self._publish(None)
            sock.close()
        if attempt.error is None and guard.status is None and attempt.opened_at is None:
            attempt.error = HandshakeFailedError(None, "the handshake did not complete")

    def _install(
        self, app: _wsclient.App, sock: socket.socket, guard: SocketGuard, attempt: Attempt
    ) -> tuple[Any, _wsclient.FastFrameBuffer | None] | None:
        """At the upgrade: our read loop must be websocket-client's dispatcher (else the attempt
        fails); install the fast frame reader, end the guard's handshake and bound every send
        by ``ping_timeout``. The read loop and the reader (None: websocket-client's own)."""
        loop = app.loop
        if not _wsclient.check_loop_installed(app) or loop is None:
            attempt.error = ConnectionFailedError(
                f"websocket-client {_wsclient.version()} did not use wsmanager's read loop "
                "(WebSocketApp.create_dispatcher): this version is not supported"
            )
            log.error("%s", attempt.error)
            shutdown_quietly(sock)
            return None
        attempt.loop = loop
        reader = _wsclient.install_fast_reader(
            app, sock, guard.leftover, self.config.max_message_size
        )
        guard.handshake_done(take_leftover=reader is not None)
        sock.settimeout(self.config.ping_timeout)  # bounds a send to a peer that stops reading
        return loop, reader

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
