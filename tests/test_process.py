"""Whole processes: exiting without destroy(), and the command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

from wsmanager.testing import FakeExchange


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def test_a_script_that_forgets_destroy_exits_promptly_and_quietly(exchange: FakeExchange) -> None:
    script = textwrap.dedent(f"""
        import threading
        from wsmanager import WSManager
        got = threading.Event()
        manager = WSManager(url={exchange.url!r})
        manager.subscribe("btcusdt@trade", lambda m: got.set())
        manager.subscribe("ethusdt@trade", lambda m: None)
        assert got.wait(10)
        print("done")
    """)
    exchange.set_rate(50)
    result = _run([sys.executable, "-c", script], timeout=30)
    exchange.set_rate(0)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Traceback" not in result.stderr and "Exception" not in result.stderr


def test_stream_command_prints_json_lines(exchange: FakeExchange) -> None:
    exchange.set_rate(50)
    result = _run(
        [
            sys.executable,
            "-m",
            "wsmanager",
            "stream",
            "btcusdt@trade",
            "ethusdt@trade",
            "--url",
            exchange.url,
            "--count",
            "5",
            "--metrics-port",
            "0",
        ]
    )
    assert "metrics at http://127.0.0.1:" in result.stderr
    exchange.set_rate(0)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    assert {json.loads(line)["e"] for line in lines} == {"trade"}


def test_stream_command_rejects_bad_input() -> None:
    result = _run(
        [sys.executable, "-m", "wsmanager", "stream", "bad name", "--url", "ws://127.0.0.1:9/ws/"]
    )
    assert result.returncode == 2 and "whitespace" in result.stderr
    result = _run([sys.executable, "-m", "wsmanager", "stream", "x@trade", "--url", "http://x/"])
    assert result.returncode == 2 and "ws://" in result.stderr


def test_demo_finishes_and_prints_a_summary() -> None:
    result = _run([sys.executable, "-m", "wsmanager", "demo", "--seconds", "3"], timeout=60)
    assert result.returncode == 0, result.stderr
    assert "fault injected" in result.stdout
    assert "== summary ==" in result.stdout
    assert "connections: 1 for 5 streams" in result.stdout
    assert "sharing saved 89%" in result.stdout
    assert "exchange rules broken: 0" in result.stdout
    assert "rotations (handovers): 1" in result.stdout
    assert "order book BTCUSDT: synced after" in result.stdout
    if shutil.which("redis-server"):
        assert "the consumer read" in result.stdout and " 0 duplicates" in result.stdout
    else:
        assert "relay: skipped" in result.stdout
    assert "HTTP 200, status 'healthy', activeConnections 1" in result.stdout


def test_health_command_against_a_real_endpoint(exchange: FakeExchange) -> None:
    from wsmanager import WSManager
    from wsmanager.monitoring import serve_metrics

    with WSManager(url=exchange.url) as manager, serve_metrics(manager, port=0) as server:
        result = _run([sys.executable, "-m", "wsmanager", "health", server.url])
        assert result.returncode == 0 and "healthy" in result.stdout
        manager.destroy()
        result = _run([sys.executable, "-m", "wsmanager", "health", server.url])
        assert result.returncode == 1 and "destroyed" in result.stdout
    result = _run([sys.executable, "-m", "wsmanager", "health", server.url, "--timeout", "1"])
    assert result.returncode == 2 and "unreachable" in result.stderr
