"""Shared pieces of the relay tests: recorders, checks, relay processes (fixtures: relay_fixtures).

``require_redis_server`` skips when redis-server is not installed, except under ``CI=true``,
where a missing binary fails the test.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import SCALE

from wsmanager.relay.redis_server import find_redis_server

__all__ = [
    "TICKER",
    "TRADE",
    "RelayProcess",
    "Seqs",
    "assert_no_duplicates_in_order",
    "entries",
    "require_redis_server",
]

TRADE = "btcusdt@trade"
TICKER = "btcusdt@ticker"


def require_redis_server() -> None:
    if find_redis_server() is None:
        message = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": CI must install it (.ci/run)")
        pytest.skip(message)


class Seqs:
    """A callback that records a field of each message (default: a trade's ``t``)."""

    def __init__(self, field: str = "t") -> None:
        self.field = field
        self.values: list[Any] = []
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, message: Any) -> None:
        with self._changed:
            self.values.append(message[self.field] if self.field else message)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def snapshot(self) -> list[Any]:
        with self._changed:
            return list(self.values)

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self.values), timeout * SCALE)

    def wait_count(self, count: int, timeout: float = 5.0) -> bool:
        return self.wait(lambda values: len(values) >= count, timeout)

    def wait_for_value(self, value: Any, timeout: float = 5.0) -> bool:
        return self.wait(lambda values: bool(values) and values[-1] == value, timeout)


def assert_no_duplicates_in_order(values: list[int]) -> None:
    wrong = [(a, b) for a, b in itertools.pairwise(values) if a >= b]
    assert not wrong, f"not strictly increasing: {wrong[:5]}"


class RelayProcess:
    """``python -m wsmanager relay`` in a process of its own, its stderr collected by a thread
    (which ends with the process)."""

    def __init__(self, redis_url: str, exchange_url: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "wsmanager", "relay"),
                *("--redis", redis_url, "--url", exchange_url, *args),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="test-relay-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self.lines.append("<EOF>")
            self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 20.0) -> str:
        """The first line of stderr containing ``text``."""

        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._changed:
            if (
                not self._changed.wait_for(
                    lambda: found() is not None or "<EOF>" in self.lines, timeout * SCALE
                )
                or found() is None
            ):
                raise AssertionError(f"no {text!r} from the relay process: {''.join(self.lines)}")
            return found() or ""

    def kill(self) -> None:
        """``kill -9``."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)

    def close(self) -> None:
        self.kill()
        self._reader.join(10)
        if self.process.stderr is not None:
            self.process.stderr.close()


def entries(redis_url: str, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.xrange(key))  # type: ignore[arg-type]
    finally:
        client.close()
