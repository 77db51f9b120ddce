"""Bounded HTTP transfers for the REST client: one deadline for the whole answer, a size cap.

``requests``' ``timeout`` bounds each read, not the answer: a body sent a byte a second never
trips it. :func:`bounded_get` bounds the whole of one GET — connect, headers and body — by one
deadline, and the body by a byte cap as it arrives (``stream=True``, ``iter_content``). A small
watcher thread per request in flight cuts its socket (``shutdown``) at the deadline, or as soon as
the caller's ``stop`` event is set (``OrderBook.close()``, ``WSManager.destroy()``), so a blocked
read ends at once whatever the server does; it ends with the request.

The socket of a request is known from the moment its headers are awaited when the session is one
of ours (:func:`new_session` mounts an adapter whose connections say which socket they use), and
from the headers on for any session (``response.raw.connection``).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection

from ..proxy import requests_proxies

__all__ = ["AnswerTooLarge", "TransferCut", "bounded_get", "new_session"]

_POLL = 0.1  # seconds between two looks at the caller's stop event
_CHUNK = 65536


class AnswerTooLarge(Exception):
    """The answer announced or sent more than the cap."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"an answer over {cap} bytes")
        self.cap = cap


class TransferCut(Exception):
    """The request was cut short: ``reason`` is ``"deadline"`` or ``"stopped"``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _InFlight:
    """One request: its socket once known, and whether (and why) it was cut."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards sock, reason
        self.sock: socket.socket | None = None
        self.reason: str | None = None
        self.done = threading.Event()

    def attach(self, sock: object) -> None:
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self.sock = sock
            cut = self.reason is not None
        if cut:  # cut before the socket was known: cut it now
            _shutdown(sock)

    def cut(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None or self.done.is_set():
                return
            self.reason = reason
            sock = self.sock
        if sock is not None:
            _shutdown(sock)

    def finish(self) -> None:
        with self._lock:
            self.done.set()
            self.sock = None


def _shutdown(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for an SSLSocket (whose own shutdown changes its state
    # under the reading thread): the blocked read sees the end of the stream and returns.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_current = threading.local()  # .request: the _InFlight of this thread's request, if any


def _watch(request: _InFlight, deadline: float, stop: threading.Event | None) -> None:
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            request.cut("deadline")
            return
        if request.done.wait(min(remaining, _POLL) if stop is not None else remaining):
            return
        if stop is not None and stop.is_set():
            request.cut("stopped")
            return


def bounded_get(
    session: requests.Session,
    url: str,
    params: Any,
    *,
    deadline: float,
    max_bytes: int,
    stop: threading.Event | None = None,
) -> tuple[requests.Response, bytes]:
    """GET ``url``: the response and its whole body, by ``deadline`` (``time.monotonic()``).

    Raises :class:`TransferCut` (the deadline passed, or ``stop`` was set), :class:`AnswerTooLarge`
    (over ``max_bytes``), or ``requests.RequestException``.
    """
    request = _InFlight()
    watcher = threading.Thread(
        target=_watch, args=(request, deadline, stop), name="wsmanager-rest-deadline", daemon=True
    )
    watcher.start()
    _current.request = request
    try:
        remaining = max(0.001, deadline - time.monotonic())
        try:
            response = session.get(
                url,
                params=params,
                timeout=(remaining, remaining),
                allow_redirects=False,
                stream=True,
            )
        finally:
            _current.request = None
        try:
            request.attach(getattr(getattr(response.raw, "connection", None), "sock", None))
            body = _read_body(response, max_bytes)
        except BaseException:
            response.close()
            raise
        request.finish()
        if request.reason is not None:  # a cut head or body can look complete: never trust it
            response.close()
            raise TransferCut(request.reason)
        return response, body
    except (requests.RequestException, OSError) as exc:
        if request.reason is not None:
            raise TransferCut(request.reason) from exc
        raise
    finally:
        request.finish()
        watcher.join()


def _read_body(response: requests.Response, max_bytes: int) -> bytes:
    length = response.headers.get("Content-Length", "")
    if length.isascii() and length.isdigit() and int(length) > max_bytes:
        raise AnswerTooLarge(max_bytes)
    body = bytearray()
    for chunk in response.iter_content(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise AnswerTooLarge(max_bytes)
    return bytes(body)


# -- sessions whose connections say which socket they use ---------------------------------------


class _TrackedHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        request = getattr(_current, "request", None)
        if request is not None:
            request.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _TrackedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        request = getattr(_current, "request", None)
        if request is not None:
            request.attach(self.sock)
        return super().getresponse(*args, **kwargs)


class _TrackedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _TrackedHTTPConnection


class _TrackedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedHTTPSConnection


_TRACKED_POOLS = {"http": _TrackedHTTPPool, "https": _TrackedHTTPSPool}


class _TrackedAdapter(HTTPAdapter):
    """An adapter whose direct and HTTP-proxy connections report their socket (SOCKS ones keep
    urllib3's own classes: their socket is known from the headers on)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_TRACKED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager: PoolManager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is ProxyManager:
            manager.pool_classes_by_scheme = dict(_TRACKED_POOLS)
        return manager


def new_session(proxy: str | None) -> requests.Session:
    """A session that goes the way the manager's connections go, its requests cut short on time."""
    session = requests.Session()
    session.trust_env = proxy == "env"
    if proxy not in (None, "env"):
        session.proxies.update({k: v for k, v in requests_proxies(proxy).items() if v is not None})
    adapter = _TrackedAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
