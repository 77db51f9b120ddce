"""The exchange's rate rules, kept: client messages per connection, connection attempts per host.

- :class:`MessageGate` (one per connection, used by its reader thread only): no more than
  ``floor(rate)`` client messages (text, ping, pong, close) in any one-second window.
- :class:`HostBudgets` (one per process, :data:`HOST_BUDGETS`): no more than ``n`` connection
  attempts to one host (every port, per client IP: see :func:`host_key`) in any ``window``
  seconds, across every manager in the process, and a pause of every attempt to a host that
  answered ``429``/``418`` with ``Retry-After``.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..core._locks import make_lock
from ..proxy import host_port, proxy_for

__all__ = ["HOST_BUDGETS", "HostBudgets", "MessageGate", "host_key"]

_WINDOW = 1.0
# Seconds added to the message window: the exchange counts a message when it arrives, and
# arrival delays vary a little, so messages sent exactly one window apart can arrive closer.
MESSAGE_SLACK = 0.05
# Seconds added to a connection budget's window: the exchange counts an attempt when it arrives,
# a little after we count it, and the delay varies; without slack an attempt at the very end of
# our window can land inside the exchange's.
BUDGET_SLACK = 0.5


def host_key(url: str, proxy: str | None = None) -> str:
    """The unit the connection budget counts, as the exchange does: per client IP towards it.

    The exchange's host name without the port (``stream.binance.com:9443`` and ``:443`` share one
    budget); through a proxy (the ``proxy`` option: a URL, or ``"env"`` resolved for ``url``)
    the attempts leave from the proxy's address, so they count against that proxy:
    ``stream.binance.com via proxy.example:3128``.
    """
    host = (urlsplit(url).hostname or "").lower()
    via = proxy_for(proxy, url)
    return host if via is None else f"{host} via {host_port(via.host.lower(), via.port)}"


class MessageGate:
    """A sliding one-second window of the messages a client sent on one connection."""

    def __init__(self, rate: float) -> None:
        self.capacity = max(1, math.floor(rate))
        self._sent: deque[float] = deque()
        self.total = 0

    def wait_time(self, now: float) -> float:
        """Seconds until one more message fits in the window (0: now)."""
        sent = self._sent
        window = _WINDOW + MESSAGE_SLACK
        while sent and now - sent[0] >= window:
            sent.popleft()
        if len(sent) < self.capacity:
            return 0.0
        return sent[0] + window - now

    def record(self, now: float) -> None:
        """Count a message sent at ``now`` (also one we could not delay, such as a pong)."""
        self._sent.append(now)
        self.total += 1


@dataclass
class _Host:
    attempts: deque[float] = field(default_factory=deque)  # monotonic times, oldest first
    paused_until: float = 0.0  # monotonic


class HostBudgets:
    """Connection attempts per :func:`host_key`, shared by every manager in the process."""

    def __init__(self) -> None:
        self._lock = make_lock("host-budgets")  # guards _hosts
        self._hosts: dict[str, _Host] = {}

    def _host(self, key: str) -> _Host:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host()
        return host

    def wait_time(self, key: str, budget: tuple[int, float] | None, now: float) -> float:
        """Seconds until an attempt to ``key`` is allowed; 0 records the attempt (taken)."""
        with self._lock:
            host = self._host(key)
            wait = max(0.0, host.paused_until - now)
            if budget is not None:
                limit, window = budget
                window += BUDGET_SLACK
                attempts = host.attempts
                while attempts and now - attempts[0] >= window:
                    attempts.popleft()
                if len(attempts) >= limit:
                    wait = max(wait, attempts[len(attempts) - limit] + window - now)
            if wait > 0:
                return wait
            host.attempts.append(now)
            if budget is None and len(host.attempts) > 10_000:  # unlimited: keep it bounded
                host.attempts.popleft()
            return 0.0

    def acquire(
        self, key: str, budget: tuple[int, float] | None, stop: threading.Event
    ) -> tuple[bool, bool]:
        """Wait (interruptibly) until an attempt to ``key`` is allowed, and take it.

        Returns ``(acquired, waited)``: ``acquired`` is False when ``stop`` was set first.
        """
        waited = False
        while True:
            wait = self.wait_time(key, budget, time.monotonic())
            if wait <= 0:
                return True, waited
            waited = True
            if stop.wait(min(wait, 1.0)):
                return False, waited

    def pause(self, key: str, seconds: float) -> None:
        """No attempt to ``key`` for ``seconds`` (a ``Retry-After``), from any manager."""
        with self._lock:
            host = self._host(key)
            host.paused_until = max(host.paused_until, time.monotonic() + seconds)

    def paused_for(self, key: str) -> float:
        with self._lock:
            host = self._hosts.get(key)
            return 0.0 if host is None else max(0.0, host.paused_until - time.monotonic())

    def attempts_in(self, key: str, window: float) -> int:
        """Attempts to ``key`` in the last ``window`` seconds (for metrics and tests)."""
        now = time.monotonic()
        with self._lock:
            host = self._hosts.get(key)
            return 0 if host is None else sum(1 for t in host.attempts if now - t < window)

    def reset(self) -> None:
        """Forget everything (for tests)."""
        with self._lock:
            self._hosts.clear()

    def after_fork_in_child(self) -> None:
        # Another thread may have held the lock at fork time: the child gets a new one. The
        # history is kept: the child shares the parent's IP, so its attempts count the same.
        self._lock = make_lock("host-budgets")


HOST_BUDGETS = HostBudgets()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=HOST_BUDGETS.after_fork_in_child)
