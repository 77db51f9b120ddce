"""A real Prometheus server on loopback scrapes serve_metrics (CI installs Debian's prometheus)."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Recorder, require_binary

from wsmanager import WSManager
from wsmanager.monitoring import serve_metrics
from wsmanager.testing import FakeExchange

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _query(port: int, expr: str) -> list[dict[str, object]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={expr}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return list(json.loads(response.read())["data"]["result"])
    except (urllib.error.URLError, ConnectionError, KeyError):
        return []


def _alerts(port: int) -> list[str]:
    url = f"http://127.0.0.1:{port}/api/v1/alerts"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            alerts = json.loads(response.read())["data"]["alerts"]
    except (urllib.error.URLError, ConnectionError, KeyError):
        return []
    return [a["labels"]["alertname"] for a in alerts if a["state"] == "firing"]


@pytest.mark.timeout(90)
def test_prometheus_scrapes_the_endpoint(
    tmp_path: Path, exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    prometheus = require_binary("prometheus", "prometheus")
    manager = make_manager()
    recorder = Recorder()
    for stream in ("a@trade", "b@trade", "c@trade"):
        manager.subscribe(stream, recorder)
    assert exchange.wait_until(lambda: exchange.open_connections() == 3)
    exchange.publish("a@trade")
    assert recorder.wait_messages(1)
    with serve_metrics(manager, port=0) as server:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {ROOT / 'monitoring' / 'prometheus-alerts.yml'}\n"
            "scrape_configs:\n  - job_name: wsmanager\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
        )
        port = _free_port()
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path}/data",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            result: list[dict[str, object]] = []
            while time.monotonic() < deadline and not result:
                result = _query(port, "ws_manager_active_connections")
                if not result:
                    time.sleep(0.5)  # polling another process's HTTP API: nothing to wait on
            assert result, "Prometheus never returned ws_manager_active_connections"
            value = result[0]["value"]
            assert isinstance(value, list) and float(value[1]) == 3
            exchange.skip("a@trade", 3)  # a gap while Prometheus watches: the rule must fire
            exchange.publish("a@trade")
            assert recorder.wait_messages(2)
            while time.monotonic() < deadline and not _query(port, "ws_manager_gaps_total>0"):
                time.sleep(0.5)  # the next scrape
            gaps = _query(port, "ws_manager_stream_gaps_total")
            assert {g["metric"]["stream"]: float(g["value"][1]) for g in gaps} == {  # type: ignore[index]
                "a@trade": 1.0,
                "b@trade": 0.0,
                "c@trade": 0.0,
            }
            firing: list[str] = []
            while time.monotonic() < deadline and "WSManagerStreamGap" not in firing:
                firing = _alerts(port)
                if "WSManagerStreamGap" not in firing:
                    time.sleep(0.5)  # Prometheus evaluates rules on its own clock
            assert "WSManagerStreamGap" in firing
        finally:
            process.terminate()
            process.wait(20)
