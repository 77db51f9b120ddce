"""Shared fixtures: a fake exchange per test, fast manager settings, and a thread-leak guard."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("WSMANAGER_CHECK_LOCKS", "1")  # every lock's order checked (before import)

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsmanager import WSManager
from wsmanager.net.limits import HOST_BUDGETS
from wsmanager.testing import FakeExchange

# Scale every time constant in the tests at once on a slow machine: WSMANAGER_TEST_TIMESCALE=3
SCALE = float(os.environ.get("WSMANAGER_TEST_TIMESCALE", "1"))

FAST: dict[str, Any] = {
    "base_retry_delay": 0.05 * SCALE,
    "max_retry_delay": 0.2 * SCALE,
    "ping_interval": 0.6 * SCALE,
    "ping_timeout": 0.3 * SCALE,
    "handshake_timeout": 1.0 * SCALE,
    "cleanup_interval": 60.0,
    "close_timeout": 0.5 * SCALE,
    # A reader waits this long for a full buffer before dropping (under ping_interval +
    # ping_timeout, as the option requires).
    "max_backpressure": 0.5 * SCALE,
    # The first part's mode (one raw connection per stream); tests of many streams per
    # connection pass streams_per_connection themselves.
    "streams_per_connection": 1,
    # Tests reconnect hundreds of times; the budget has tests of its own.
    "connection_budget": None,
}


# Many streams per connection (Binance's combined streams), with the fast settings.
COMBINED: dict[str, Any] = {**FAST, "streams_per_connection": 200}


def require_binary(name: str, package: str) -> str:
    """The path of a service binary the test needs: skip with a clear message when it is absent
    on a developer's machine, but FAIL under ``CI=true`` (.ci/run installs it)."""
    path = shutil.which(name)
    if path is not None:
        return path
    message = f"{name} not installed (Debian: {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; CI must install it in .ci/run")
    pytest.skip(message)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until true or ``timeout`` (scaled). For state with no event to wait on."""
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail any test that leaves a thread running after it ends."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5 * SCALE
    while time.monotonic() < deadline:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.02)
    pytest.fail(f"threads left running: {[t.name for t in leaked]}")


@pytest.fixture(autouse=True)
def fresh_host_budgets() -> Iterator[None]:
    """The connection budget counts per host, every port together (as the exchange counts per
    IP), and every fake exchange is on 127.0.0.1: one test's attempts and ``Retry-After`` pauses
    must not reach the next test."""
    yield
    HOST_BUDGETS.reset()


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange() as fake:
        yield fake


@pytest.fixture
def make_manager(exchange: FakeExchange) -> Iterator[Callable[..., WSManager]]:
    managers: list[WSManager] = []

    def make(**options: Any) -> WSManager:
        settings = {**FAST, **options}
        manager = WSManager(url=settings.pop("url", exchange.url), **settings)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.destroy()


class Recorder:
    """A callback that records what it gets and lets a test wait for a count."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.errors: list[BaseException] = []
        self.completed = 0
        self.threads: set[str] = set()
        self._changed = threading.Condition()

    def __call__(self, message: Any) -> None:
        with self._changed:
            self.messages.append(message)
            self.threads.add(threading.current_thread().name)
            self._changed.notify_all()

    def on_error(self, error: BaseException) -> None:
        with self._changed:
            self.errors.append(error)
            self._changed.notify_all()

    def on_complete(self) -> None:
        with self._changed:
            self.completed += 1
            self._changed.notify_all()

    def wait(self, predicate: Callable[[Recorder], bool], timeout: float = 5.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout * SCALE)

    def wait_messages(self, count: int, timeout: float = 5.0) -> bool:
        return self.wait(lambda r: len(r.messages) >= count, timeout)


def flows(exchange: FakeExchange, recorder: Recorder, stream: str = "btcusdt@trade") -> bool:
    """Data reaches ``recorder`` again (publishing until it does, bounded)."""
    count = len(recorder.messages) + 1
    deadline = time.monotonic() + 5 * SCALE
    while time.monotonic() < deadline:
        exchange.publish(stream)
        if recorder.wait(lambda r: len(r.messages) >= count, 0.05):
            return True
    return False


@pytest.fixture
def manager_for() -> Iterator[Callable[..., WSManager]]:
    """``manager_for(exchange, **options)``: a combined-streams manager on ``exchange``,
    destroyed at the end of the test (and the process-wide host budgets forgotten)."""
    from wsmanager.net.limits import HOST_BUDGETS

    managers: list[WSManager] = []

    def make(exchange: FakeExchange, **options: Any) -> WSManager:
        manager = WSManager(url=exchange.url, **{**COMBINED, **options})
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.destroy()
    HOST_BUDGETS.reset()
