"""Metrics exposition, the HTTP endpoint, the dashboard and alert files, the health probe."""

from __future__ import annotations

import dataclasses
import enum
import json
import re
import selectors
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import responses
from conftest import SCALE, Recorder, require_binary, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wsmanager import Health, WSManager
from wsmanager.cli.main import probe_health
from wsmanager.monitoring import MetricsSource, serve_metrics
from wsmanager.testing import FakeExchange

ROOT = Path(__file__).resolve().parent.parent
TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]
SEED_NAMES = {
    "ws_manager_active_connections",
    "ws_manager_retry_count_total",
    "ws_manager_stream_creations_total",
    "ws_manager_stream_cleanups_total",
    "ws_manager_active_connections_hwm",
    "ws_manager_messages_received_total",
    "ws_manager_invalid_messages_total",
    "ws_manager_callback_errors_total",
}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _busy_manager(exchange: FakeExchange, make_manager: MakeManager) -> WSManager:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    manager.subscribe(TRADE, lambda m: 1 / 0)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    exchange.send_raw(TRADE, "nope")
    assert recorder.wait_messages(1)
    assert wait_for(lambda: manager.get_metrics().invalid_messages == 1)
    return manager


def test_exposition_parses_back_to_get_metrics(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = _busy_manager(exchange, make_manager)
    text = manager.get_prometheus_metrics()
    parsed = samples(text)
    metrics = manager.get_metrics()
    assert {name for name, _ in parsed} >= SEED_NAMES
    expected = {
        "ws_manager_active_connections": metrics.active_connections,
        "ws_manager_active_connections_hwm": metrics.active_connections_hwm,
        "ws_manager_active_streams": metrics.active_streams,
        "ws_manager_subscribers": metrics.subscribers,
        "ws_manager_retry_count_total": metrics.retry_count,
        "ws_manager_stream_creations_total": metrics.stream_creations,
        "ws_manager_stream_cleanups_total": metrics.stream_cleanups,
        "ws_manager_messages_received_total": metrics.messages_received,
        "ws_manager_invalid_messages_total": metrics.invalid_messages,
        "ws_manager_callback_errors_total": metrics.callback_errors,
        "ws_manager_messages_dropped_total": metrics.dropped_messages,
        "ws_manager_oversized_messages_total": metrics.oversized_messages,
    }
    assert {name: parsed[(name, ())] for name in expected} == expected
    assert expected["ws_manager_callback_errors_total"] == 1
    age = parsed[("ws_manager_stream_last_message_age_seconds", (("stream", TRADE),))]
    assert 0 <= age < 5
    types = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert types["ws_manager_active_connections"] == "gauge"
    assert types["ws_manager_retry_count"] == "counter"


def test_two_managers_never_collide(exchange: FakeExchange, make_manager: MakeManager) -> None:
    busy = _busy_manager(exchange, make_manager)
    idle = make_manager()
    assert samples(idle.get_prometheus_metrics())[("ws_manager_subscribers", ())] == 0
    assert samples(busy.get_prometheus_metrics())[("ws_manager_subscribers", ())] == 2


def test_a_shared_registry_labels_each_manager(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    shared = CollectorRegistry()
    first = make_manager(registry=shared, metrics_name="trades")
    second = make_manager(registry=shared, metrics_name="books")
    first.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    parsed = samples(generate_latest(shared).decode())
    assert parsed[("ws_manager_subscribers", (("manager", "trades"),))] == 1
    assert parsed[("ws_manager_subscribers", (("manager", "books"),))] == 0
    assert ("ws_manager_subscribers", (("manager", "books"),)) not in samples(
        first.get_prometheus_metrics()
    )
    with pytest.raises(ValueError, match="trades"):
        WSManager(url=exchange.url, registry=shared, metrics_name="trades").destroy()
    second.destroy()
    parsed = samples(generate_latest(shared).decode())
    assert ("ws_manager_subscribers", (("manager", "books"),)) not in parsed
    first.destroy()
    assert generate_latest(shared) == b""


def _get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_endpoint_over_http(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = _busy_manager(exchange, make_manager)
    with serve_metrics(manager, port=0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/api/ws/metrics"
        status, headers, body = _get(server.url)
        assert status == 200 and headers["Content-Type"] == "application/json"
        document = json.loads(body)
        assert document["status"] == "healthy" and document["reasons"] == []
        assert {
            "activeConnections",
            "retryCount",
            "streamCreations",
            "streamCleanups",
            "activeConnectionsHwm",
            "implementation",
        } <= set(document["metrics"])
        assert document["metrics"]["activeConnections"] == 1
        assert document["metrics"]["implementation"] == "WSManager"
        status, headers, body = _get(server.url, "HEAD")
        assert status == 200 and body == b""
        status, headers, body = _get(server.url + "?format=prometheus")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        assert ("ws_manager_active_connections", ()) in samples(body.decode())
        assert _get(f"http://127.0.0.1:{server.port}/metrics")[0] == 200
        assert _get(f"http://127.0.0.1:{server.port}/nope")[0] == 404
        status, headers, _ = _get(server.url, "POST")
        assert status == 405 and headers["Allow"] == "GET, HEAD"
        manager.destroy()
        status, _, body = _get(server.url)
        assert status == 503 and json.loads(body)["status"] == "unhealthy"
        assert _get(server.url, "HEAD")[0] == 503


def test_endpoint_is_503_when_a_stream_cannot_connect(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exchange.reject(503)
    manager = make_manager(max_retry_attempts=None)
    manager.subscribe(TRADE, Recorder())
    with serve_metrics(manager, port=0) as server:
        assert wait_for(lambda: _get(server.url)[0] == 503, 3)
        reasons = json.loads(_get(server.url)[2])["reasons"]
        assert TRADE in reasons[0]


def _exported_names(exchange: FakeExchange, make_manager: MakeManager) -> set[str]:
    manager = _busy_manager(exchange, make_manager)
    return {name for name, _ in samples(manager.get_prometheus_metrics())}


def _metric_names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bws_manager_[a-z_]+", expr))


def test_dashboard_queries_use_only_exported_metrics(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exported = _exported_names(exchange, make_manager)
    dashboard = json.loads((ROOT / "monitoring/grafana-dashboard.json").read_text())
    assert any(v["type"] == "datasource" for v in dashboard["templating"]["list"])
    used: set[str] = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = _metric_names_in(target["expr"])
            assert names, target["expr"]
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    assert used >= {
        "ws_manager_active_connections",
        "ws_manager_active_connections_hwm",
        "ws_manager_retry_count_total",
        "ws_manager_messages_dropped_total",
        "ws_manager_stream_last_message_age_seconds",
        "ws_manager_stream_gaps_total",
        "ws_manager_connection_attempts_throttled_total",
        "ws_manager_client_messages_sent_total",
        "ws_manager_connections",
    }


def test_alert_rules_use_exported_metrics_and_the_seed_thresholds(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exported = _exported_names(exchange, make_manager)
    text = (ROOT / "monitoring/prometheus-alerts.yml").read_text()
    expressions = re.findall(r"expr: (.+)", text)
    assert "ws_manager_active_connections > 100" in expressions
    assert "rate(ws_manager_retry_count_total[5m]) > 0.5" in expressions
    assert "increase(ws_manager_stream_gaps_total[5m]) > 0" in expressions
    for expr in expressions:
        assert _metric_names_in(expr) <= exported
    promtool = require_binary("promtool", "Debian's prometheus package")
    result = subprocess.run(
        [promtool, "check", "rules", str(ROOT / "monitoring/prometheus-alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


URL = "http://127.0.0.1:3000/api/ws/metrics"


@responses.activate
def test_health_probe_healthy(capsys: pytest.CaptureFixture[str]) -> None:
    responses.get(URL, json={"status": "healthy", "reasons": [], "metrics": {}})
    assert probe_health(URL) == 0


@responses.activate
def test_health_probe_unhealthy_prints_reasons(capsys: pytest.CaptureFixture[str]) -> None:
    responses.get(URL, status=503, json={"status": "unhealthy", "reasons": ["stream x down"]})
    assert probe_health(URL) == 1
    assert "stream x down" in capsys.readouterr().out


@responses.activate
def test_health_probe_unreachable_or_malformed() -> None:
    responses.get(URL, body=requests.ConnectionError("refused"))
    assert probe_health(URL) == 2
    responses.replace(responses.GET, URL, body="<html>", status=200)
    assert probe_health(URL) == 2
    responses.replace(responses.GET, URL, json={"status": "healthy"}, status=503)
    assert probe_health(URL) == 2


# The endpoint under hostile or many clients, and any metrics source (defect 17).


def _connect_idle(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]


def _answered(
    clients: list[socket.socket], expected: int, timeout: float = 10
) -> dict[socket.socket, bytes]:
    """What clients received up to the server's EOF, once ``expected`` got it or at ``timeout``."""
    received: dict[socket.socket, bytes] = {}
    pending = {c: b"" for c in clients}
    deadline = time.monotonic() + timeout * SCALE
    with selectors.DefaultSelector() as selector:
        for client in clients:
            selector.register(client, selectors.EVENT_READ)
        while len(received) < expected and time.monotonic() < deadline:
            for key, _ in selector.select(max(deadline - time.monotonic(), 0)):
                client = key.fileobj
                assert isinstance(client, socket.socket)
                try:
                    data = client.recv(4096)
                except ConnectionResetError:
                    data = b""
                if data:
                    pending[client] += data
                else:
                    selector.unregister(client)
                    received[client] = pending.pop(client)
    return received


def test_idle_clients_cannot_hold_the_server(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = _busy_manager(exchange, make_manager)
    cap = 8
    server = serve_metrics(manager, port=0, max_clients=cap, request_timeout=30 * SCALE)
    clients: list[socket.socket] = []
    try:
        before = threading.active_count()
        clients = _connect_idle(server.port, 200)
        # Past the cap each one gets a canned 503 at once, from the accepting thread.
        refused = _answered(clients, 200 - cap)
        assert len(refused) == 200 - cap
        assert all(answer.startswith(b"HTTP/1.0 503 ") for answer in refused.values())
        assert threading.active_count() - before <= cap
        started = time.monotonic()
        status, headers, body = _get(server.url)
        assert (status, headers["Retry-After"], body) == (503, "1", b"too many clients\n")
        assert time.monotonic() - started < 1.0 * SCALE
        started = time.monotonic()
        server.close()
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 * SCALE, f"close() took {elapsed:.2f} s with {cap} idle clients"
        admitted = [c for c in clients if c not in refused]
        assert len(_answered(admitted, cap, timeout=1)) == cap  # their sockets were shut down
    finally:
        server.close()
        for client in clients:
            client.close()


def test_a_trickling_client_is_cut_at_the_request_deadline(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    deadline = 0.5 * SCALE
    with serve_metrics(manager, port=0, max_clients=1, request_timeout=deadline) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as slow:
            started = time.monotonic()
            slow.sendall(b"GET /api/ws/metrics HTTP/1.0\r\nX-Slow: ")
            slow.setblocking(False)
            cut = False
            while not cut and time.monotonic() - started < 5 * SCALE:
                try:
                    slow.sendall(b"x")  # one byte every 50 ms: each recv is quick, the whole is not
                    cut = slow.recv(1) == b""
                except BlockingIOError:
                    time.sleep(0.05)
                except OSError:
                    cut = True
            elapsed = time.monotonic() - started
            assert cut and deadline * 0.8 <= elapsed < deadline + 1.0 * SCALE, elapsed
        assert wait_for(lambda: _get(server.url)[0] == 200)  # the slot is free again


def test_a_huge_request_head_is_cut_not_buffered(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    # 80 header lines of 60 KB: within the standard library's per-line and per-count limits.
    line = b"X-Big: " + b"a" * 60_000 + b"\r\n"
    with serve_metrics(manager, port=0) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5 * SCALE) as client:
            answer = b""
            try:
                client.sendall(b"GET /api/ws/metrics HTTP/1.0\r\n" + line * 80 + b"\r\n")
                while chunk := client.recv(65536):
                    answer += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass
            assert not answer.startswith(b"HTTP/1.0 200"), "a 4.8 MB head was read and answered"
        assert _get(server.url)[0] == 200


def test_a_free_slot_serves_normally_again(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    with serve_metrics(manager, port=0, max_clients=2, request_timeout=30 * SCALE) as server:
        first, second = _connect_idle(server.port, 2)
        with first, second:
            assert wait_for(lambda: _get(server.url)[0] == 503)
            first.close()
            assert wait_for(lambda: _get(server.url)[0] == 200)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_clients": 0}, "max_clients"),
        ({"max_clients": True}, "max_clients"),
        ({"max_clients": "8"}, "max_clients"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"request_timeout": -1.0}, "request_timeout"),
        ({"request_timeout": float("inf")}, "request_timeout"),
        ({"request_timeout": float("nan")}, "request_timeout"),
    ],
)
def test_bad_limits_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        serve_metrics(_Source(), port=0, **options)  # type: ignore[arg-type]


class _State(enum.Enum):
    UP = "up"


@dataclasses.dataclass(frozen=True)
class _Info:
    link_name: str
    state: _State


@dataclasses.dataclass(frozen=True)
class _Metrics:
    links_open: int = 2
    implementation: str = "Relay"

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


class _Source:
    """Not a WSManager: the least a relay must offer to be served."""

    healthy = True

    def health(self) -> Health:
        return Health(self.healthy, [] if self.healthy else ["relay down"])

    def get_metrics(self) -> _Metrics:
        return _Metrics()

    def get_prometheus_metrics(self) -> str:
        return "relay_links_open 2\n"


class _SourceWithStreams(_Source):
    def get_stream_info(self) -> list[_Info]:
        return [_Info("btcusdt@trade", _State.UP)]


def test_any_metrics_source_is_served(exchange: FakeExchange, make_manager: MakeManager) -> None:
    assert isinstance(make_manager(), MetricsSource)
    source = _Source()
    assert isinstance(source, MetricsSource)
    with serve_metrics(source, port=0) as server:
        status, _, body = _get(server.url)
        assert status == 200
        assert json.loads(body) == {
            "status": "healthy",
            "reasons": [],
            "metrics": {"linksOpen": 2, "implementation": "Relay"},
            "streams": [],
        }
        assert _get(server.url + "?format=prometheus")[2] == b"relay_links_open 2\n"
        source.healthy = False
        status, _, body = _get(server.url)
        assert status == 503 and json.loads(body)["reasons"] == ["relay down"]
    with serve_metrics(_SourceWithStreams(), port=0) as server:
        streams = json.loads(_get(server.url)[2])["streams"]
        assert streams == [{"linkName": "btcusdt@trade", "state": "up"}]


def test_a_source_without_the_methods_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"object has no health\(\), get_metrics\(\)"):
        serve_metrics(object(), port=0)  # type: ignore[arg-type]


def test_a_source_that_raises_answers_500_and_the_server_goes_on() -> None:
    class Broken(_Source):
        def health(self) -> Health:
            raise RuntimeError("bug in the source")

    with serve_metrics(Broken(), port=0) as server:
        assert _get(server.url)[0] == 500
        assert _get(server.url + "?format=prometheus")[0] == 200
