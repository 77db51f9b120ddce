"""Metrics exposition, the HTTP endpoint, the dashboard and alert files, the health probe."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
import responses
from conftest import Recorder, wait_for
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from wsmanager import WSManager
from wsmanager.cli import probe_health
from wsmanager.monitoring import serve_metrics
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
    }


def test_alert_rules_use_exported_metrics_and_the_seed_thresholds(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    exported = _exported_names(exchange, make_manager)
    text = (ROOT / "monitoring/prometheus-alerts.yml").read_text()
    expressions = re.findall(r"expr: (.+)", text)
    assert "ws_manager_active_connections > 100" in expressions
    assert "rate(ws_manager_retry_count_total[5m]) > 0.5" in expressions
    for expr in expressions:
        assert _metric_names_in(expr) <= exported
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (CI installs Debian's prometheus)")
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
