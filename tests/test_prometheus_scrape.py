"""A real Prometheus server on loopback scrapes serve_metrics (CI installs Debian's prometheus)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Recorder

from wsmanager import WSManager
from wsmanager.monitoring import serve_metrics
from wsmanager.testing import FakeExchange

PROMETHEUS = shutil.which("prometheus")


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


@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
@pytest.mark.timeout(90)
def test_prometheus_scrapes_the_endpoint(
    tmp_path: Path, exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    for stream in ("a@trade", "b@trade", "c@trade"):
        manager.subscribe(stream, Recorder())
    assert exchange.wait_until(lambda: exchange.open_connections() == 3)
    with serve_metrics(manager, port=0) as server:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: wsmanager\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{server.port}']\n"
        )
        port = _free_port()
        process = subprocess.Popen(
            [
                str(PROMETHEUS),
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
        finally:
            process.terminate()
            process.wait(20)
