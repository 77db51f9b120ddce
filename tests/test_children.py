"""Issue 17, finding 14: every child process a command starts ends with it, however it ends.

``wsmanager demo`` starts a redis-server (for its relay); ended by SIGTERM (``timeout``, a service
manager), SIGHUP (its terminal closed) or even SIGKILL, that server must not stay behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SCALE
from relay_helpers import require_redis_server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live process whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        state, parent = stat[stat.rindex(")") + 2 :].split()[:2]
        if int(parent) == pid and state != "Z":
            found.append((int(entry.name), name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie has ended (nobody reaped it yet)


def _wait(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(predicate())  # type: ignore[operator]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_the_demos_redis_server_ends_with_the_demo(sig: signal.Signals) -> None:
    require_redis_server()
    demo = subprocess.Popen(
        [sys.executable, "-m", "wsmanager", "demo", "--seconds", "120", "--rate", "5"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    redis: list[int] = []
    try:
        assert _wait(
            lambda: redis.extend(p for p, n in _children(demo.pid) if n == "redis-server") or redis,
            30,
        ), "the demo started no redis-server"
        time.sleep(0.5 * SCALE)  # let the demo get into its loop (a signal at any time must do)
        demo.send_signal(sig)
        demo.wait(30 * SCALE)
        assert _wait(lambda: not _alive(redis[0]), 10), f"redis-server {redis[0]} outlived {sig!r}"
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in redis:  # never leave one behind, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
