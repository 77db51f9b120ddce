"""The metrics and health endpoint: a small HTTP server from the standard library.

``GET``/``HEAD /api/ws/metrics`` answers 200 when the source is healthy and 503 when not; the
``GET`` body is JSON with the seed's camelCase metric names. ``?format=prometheus`` (and
``/metrics``, Prometheus' default path) answers the text exposition.

The source is anything shaped like a manager (:class:`MetricsSource`): a ``WSManager``, a relay.

Clients cannot hold the server hostage: at most ``max_clients`` are served at once, one thread
each; a client over the cap gets a canned ``503`` from the accepting thread and no thread of its
own. Each client has ``request_timeout`` seconds from being accepted to getting its answer (the
serving thread shuts the socket down past it, so trickling bytes does not extend it) and 64 KiB
of request head, and ``close()`` shuts every client socket down and joins every thread it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from enum import Enum
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, urlsplit

from .core.usercode import user_code_raised
from .metrics import CONTENT_TYPE_LATEST
from .net._closing import ClosesOnExit

__all__ = ["MetricsServer", "MetricsSource", "health_document", "serve_metrics"]

log = logging.getLogger("wsmanager.monitoring")

API_PATH = "/api/ws/metrics"
PROMETHEUS_PATH = "/metrics"

# Limits
DEFAULT_MAX_CLIENTS = 32
DEFAULT_REQUEST_TIMEOUT = 5.0  # seconds from accept to the answer sent
_MAX_REFUSED = 256  # refused sockets kept open (no thread) until their client reads the 503
_REFUSED_LINGER = 1.0  # seconds a refused socket waits for its client to close first
_POLL_INTERVAL = 0.1  # seconds between deadline checks by the serving thread
_MAX_HEAD = 64 * 1024  # bytes of request line + headers read from one client

_BUSY_BODY = b"too many clients\n"
_BUSY = (
    b"HTTP/1.0 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: %d\r\n"
    b"Retry-After: 1\r\n"
    b"Cache-Control: no-store\r\n"
    b"Connection: close\r\n"
    b"\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


class _HealthLike(Protocol):
    @property
    def healthy(self) -> bool: ...

    @property
    def reasons(self) -> Iterable[str]: ...


class _MetricsLike(Protocol):
    def as_dict(self) -> Mapping[str, Any]: ...


@runtime_checkable
class MetricsSource(Protocol):
    """What ``serve_metrics`` needs: a ``WSManager``, a relay, or anything shaped like them.

    ``get_stream_info()`` (a list of dataclasses, one per stream) is optional: without it the
    ``streams`` list of the JSON document is empty.
    """

    def health(self) -> _HealthLike: ...

    def get_metrics(self) -> _MetricsLike: ...

    def get_prometheus_metrics(self) -> str: ...


_REQUIRED = ("health", "get_metrics", "get_prometheus_metrics")


def _check_source(source: object) -> None:
    missing = [name for name in _REQUIRED if not callable(getattr(source, name, None))]
    if missing:
        raise TypeError(
            f"serve_metrics needs an object with {', '.join(n + '()' for n in _REQUIRED)}; "
            f"{type(source).__name__} has no {', '.join(n + '()' for n in missing)}"
        )


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _plain(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


def _stream_document(info: object) -> dict[str, Any]:
    if dataclasses.is_dataclass(info):
        items = [(f.name, getattr(info, f.name)) for f in dataclasses.fields(info)]
    else:
        items = list(vars(info).items())
    return {_camel(key): _plain(value) for key, value in items}


def health_document(manager: MetricsSource) -> dict[str, Any]:
    """The JSON body of ``GET /api/ws/metrics`` for any :class:`MetricsSource`."""
    health = manager.health()
    get_stream_info = getattr(manager, "get_stream_info", None)
    streams: Iterable[object] = get_stream_info() if callable(get_stream_info) else ()
    document = {
        "status": "healthy" if health.healthy else "unhealthy",
        "reasons": list(health.reasons),
        "metrics": {_camel(k): v for k, v in manager.get_metrics().as_dict().items()},
        "streams": [_stream_document(info) for info in streams],
    }
    get_book_stats = getattr(manager, "get_book_stats", None)  # a WSManager's order books
    if callable(get_book_stats):
        document["orderBooks"] = [_stream_document(stats) for stats in get_book_stats()]
    return document


class _HeadTooLarge(Exception):
    """A client sent more than ``_MAX_HEAD`` bytes of request head; its connection is cut."""


class _HeadReader(io.BufferedIOBase):
    """The handler's ``rfile``: the request head only, at most ``limit`` bytes in all.

    The standard library bounds each line (64 KiB) and the header count (100), which still lets
    one client make us buffer 6.4 MB; this bounds the whole head.
    """

    def __init__(self, raw: io.BufferedIOBase, limit: int) -> None:
        super().__init__()
        self._raw = raw
        self._left = limit

    def readable(self) -> bool:
        return True

    def readline(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            raise _HeadTooLarge(f"request head over {_MAX_HEAD} bytes")
        wanted = self._left if size is None or size < 0 else min(size, self._left)
        line = self._raw.readline(wanted)
        self._left -= len(line)
        return line

    def close(self) -> None:
        self._raw.close()
        super().close()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0 (the default): one request per connection, so no idle keep-alive connection
    # holds a slot after its answer.

    def setup(self) -> None:
        super().setup()
        # A per recv/send timeout as a backstop; the server's deadline bounds their sum.
        self.connection.settimeout(self.server.request_timeout)
        self.rfile = _HeadReader(self.rfile, _MAX_HEAD)

    def do_GET(self) -> None:
        self._answer(with_body=True)

    def do_HEAD(self) -> None:
        self._answer(with_body=False)

    def _not_allowed(self) -> None:
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            b"method not allowed\n",
            "text/plain",
            with_body=True,
            extra={"Allow": "GET, HEAD"},
        )

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _answer(self, *, with_body: bool) -> None:
        url = urlsplit(self.path)
        source = self.server.source
        prometheus = url.path == PROMETHEUS_PATH or (
            url.path == API_PATH and parse_qs(url.query).get("format") == ["prometheus"]
        )
        if url.path not in (API_PATH, PROMETHEUS_PATH):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", with_body=with_body)
            return
        try:
            if prometheus:
                status, content_type = HTTPStatus.OK, CONTENT_TYPE_LATEST
                body = source.get_prometheus_metrics().encode("utf-8")
            else:
                document = health_document(source)
                healthy = document["status"] == "healthy"
                status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
                content_type = "application/json"
                body = (json.dumps(document, indent=2) + "\n").encode("utf-8")
        except BaseException as exc:  # a source of the user's: SystemExit included
            user_code_raised(exc, "metrics endpoint", "the metrics source", logger=log)
            status, content_type, body = HTTPStatus.INTERNAL_SERVER_ERROR, "text/plain", b"error\n"
        self._send(status, body, content_type, with_body=with_body)

    def _send(
        self,
        status: HTTPStatus,
        body: bytes,
        content_type: str,
        *,
        with_body: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no stderr per request
        pass


def _shutdown_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class _Server(HTTPServer):
    """One thread per admitted client, up to ``max_clients``; everything else on the serving thread.

    Threads: the serving thread (``serve_forever``) accepts, refuses, enforces deadlines in
    ``service_actions`` and owns ``_threads`` and ``_refused``; ``server_close`` reads those only
    after the serving loop has ended. ``_lock`` guards ``_clients`` and closing its sockets, so a
    deadline never shuts down a socket number that a finished client has already given back.
    """

    request_queue_size = 512  # over-cap clients are accepted and refused, not left in the backlog

    def __init__(
        self,
        address: tuple[str, int],
        source: MetricsSource,
        *,
        max_clients: int,
        request_timeout: float,
    ) -> None:
        self.source = source
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self._lock = threading.Lock()  # guards _clients and the closing of their sockets
        self._clients: dict[socket.socket, float] = {}  # admitted socket -> monotonic deadline
        self._threads: list[threading.Thread] = []  # serving thread only, then server_close
        self._refused: list[tuple[socket.socket, float]] = []  # serving thread only
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        sock: socket.socket = request
        with self._lock:
            admitted = len(self._clients) < self.max_clients
            if admitted:
                self._clients[sock] = time.monotonic() + self.request_timeout
        if not admitted:
            self._refuse(sock)
            return
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(
            target=self._serve_client,
            args=(sock, client_address),
            name="wsmanager-metrics-client",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # no thread to be had: refuse rather than lose the slot
            log.warning("metrics endpoint: could not start a thread for a client")
            with self._lock:
                del self._clients[sock]
                self.shutdown_request(sock)
            return
        self._threads.append(thread)

    def _serve_client(self, sock: socket.socket, client_address: Any) -> None:
        try:
            self.finish_request(sock, client_address)
        except Exception:
            self.handle_error(sock, client_address)
        finally:
            with self._lock:
                del self._clients[sock]
                self.shutdown_request(sock)

    def _refuse(self, sock: socket.socket) -> None:
        """Answer 503 without a thread; keep the socket until its client closes (no RST)."""
        try:
            sock.setblocking(False)
            _drain(sock)
            sock.send(_BUSY)  # a few bytes into an empty send buffer: never blocks
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            sock.close()
            return
        if len(self._refused) >= _MAX_REFUSED:
            oldest, _ = self._refused.pop(0)
            oldest.close()
        self._refused.append((sock, time.monotonic() + _REFUSED_LINGER))

    def service_actions(self) -> None:
        now = time.monotonic()
        with self._lock:
            for sock, deadline in self._clients.items():
                if deadline <= now:
                    _shutdown_quietly(sock)  # wakes its thread, which then ends
                    self._clients[sock] = math.inf
        kept = []
        for sock, deadline in self._refused:
            if _drain(sock) and deadline > now:
                kept.append((sock, deadline))
            else:
                sock.close()
        self._refused = kept

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("metrics endpoint: a client from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        """After ``shutdown()``: stop listening, cut every client, join every thread started."""
        super().server_close()
        with self._lock:
            for sock in self._clients:
                _shutdown_quietly(sock)
        for sock, _ in self._refused:
            sock.close()
        self._refused = []
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        self._threads = []


def _drain(sock: socket.socket) -> bool:
    """Read what a non-blocking socket has, up to 64 KiB a call; False once it should be closed:
    its peer closed, it failed, or it keeps sending (the serving thread must not spin here)."""
    try:
        for _ in range(16):
            if not sock.recv(4096):
                return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


class MetricsServer(ClosesOnExit):
    """A running endpoint; ``close()`` stops it promptly and ends its threads."""

    def __init__(
        self,
        manager: MetricsSource,
        host: str,
        port: int,
        *,
        max_clients: int = DEFAULT_MAX_CLIENTS,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        _check_source(manager)
        if isinstance(max_clients, bool) or not isinstance(max_clients, int) or max_clients < 1:
            raise ValueError(f"max_clients must be an int >= 1, got {max_clients!r}")
        if (
            isinstance(request_timeout, bool)
            or not isinstance(request_timeout, (int, float))
            or not 0 < request_timeout < math.inf
        ):
            raise ValueError(
                f"request_timeout must be a number of seconds > 0, got {request_timeout!r}"
            )
        self._server = _Server(
            (host, port), manager, max_clients=max_clients, request_timeout=float(request_timeout)
        )
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL},
            name="wsmanager-metrics-server",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{API_PATH}"

    def close(self) -> None:
        """Stop accepting, cut connected clients, and join every thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(
    manager: MetricsSource,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    max_clients: int = DEFAULT_MAX_CLIENTS,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> MetricsServer:
    """Serve ``manager``'s metrics and health on ``http://host:port/api/ws/metrics``.

    ``manager`` is any :class:`MetricsSource` (a ``WSManager``, a relay). Binds to loopback unless
    told otherwise; port 0 picks a free port. At most ``max_clients`` are served at once (others
    get a quick 503), each within ``request_timeout`` seconds of connecting.
    """
    return MetricsServer(
        manager, host, port, max_clients=max_clients, request_timeout=request_timeout
    )
