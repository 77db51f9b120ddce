"""The metrics and health endpoint: a small threaded HTTP server from the standard library.

``GET``/``HEAD /api/ws/metrics`` answers 200 when the manager is healthy and 503 when not; the
``GET`` body is JSON with the seed's camelCase metric names. ``?format=prometheus`` (and
``/metrics``, Prometheus' default path) answers the text exposition.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ._closing import ClosesOnExit
from .manager import WSManager
from .metrics import CONTENT_TYPE_LATEST

__all__ = ["MetricsServer", "health_document", "serve_metrics"]

API_PATH = "/api/ws/metrics"
PROMETHEUS_PATH = "/metrics"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def health_document(manager: WSManager) -> dict[str, Any]:
    """The JSON body of ``GET /api/ws/metrics``."""
    health = manager.health()
    return {
        "status": "healthy" if health.healthy else "unhealthy",
        "reasons": list(health.reasons),
        "metrics": {_camel(k): v for k, v in manager.get_metrics().as_dict().items()},
        "streams": [
            {_camel(k): (v.value if k == "state" else v) for k, v in vars(info).items()}
            for info in manager.get_stream_info()
        ],
    }


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so no idle keep-alive connection holds a request
    # thread (and so close()) for long.
    timeout = 5  # seconds a client may take to send its request

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
        manager = self.server.manager
        prometheus = url.path == PROMETHEUS_PATH or (
            url.path == API_PATH and parse_qs(url.query).get("format") == ["prometheus"]
        )
        if url.path not in (API_PATH, PROMETHEUS_PATH):
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", with_body=with_body)
        elif prometheus:
            body = manager.get_prometheus_metrics().encode("utf-8")
            self._send(HTTPStatus.OK, body, CONTENT_TYPE_LATEST, with_body=with_body)
        else:
            document = health_document(manager)
            status = (
                HTTPStatus.OK
                if document["status"] == "healthy"
                else (HTTPStatus.SERVICE_UNAVAILABLE)
            )
            body = (json.dumps(document, indent=2) + "\n").encode("utf-8")
            self._send(status, body, "application/json", with_body=with_body)

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


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # request threads are joined on close
    block_on_close = True

    def __init__(self, address: tuple[str, int], manager: WSManager) -> None:
        self.manager = manager
        super().__init__(address, _Handler)


class MetricsServer(ClosesOnExit):
    """A running endpoint; ``close()`` stops it and ends its threads."""

    def __init__(self, manager: WSManager, host: str, port: int) -> None:
        self._server = _Server((host, port), manager)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
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
        if self._closed:
            return
        self._closed = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def serve_metrics(manager: WSManager, host: str = "127.0.0.1", port: int = 3000) -> MetricsServer:
    """Serve ``manager``'s metrics and health on ``http://host:port/api/ws/metrics``.

    Binds to loopback unless told otherwise; port 0 picks a free port.
    """
    return MetricsServer(manager, host, port)
