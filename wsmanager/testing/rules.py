"""The exchange's published rules as a value, the record of a broken rule, and the windows
that count (pure: time is passed in, nothing here touches a socket).

``FakeExchange(rules=BINANCE_SPOT_RULES)`` enforces Binance's numbers for spot market-data
streams; ``ExchangeRules.binance(max_connection_age=2.0)`` changes some of them for a test. Each
value ``None`` turns its rule off; ``rules=None`` (the default) is the permissive exchange.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, fields, replace
from typing import Any, NamedTuple

__all__ = [
    "BINANCE_SPOT_RULES",
    "AttemptGate",
    "ExchangeRules",
    "GateAnswer",
    "SlidingWindow",
    "Violation",
]


@dataclass(frozen=True)
class ExchangeRules:
    """Limits the exchange enforces (``None``: that rule is off)."""

    # Per connection
    max_client_messages_per_second: int | None = None  # text, ping and pong frames, any 1 s window
    max_streams_per_connection: int | None = None
    max_connection_age: float | None = None  # seconds; then the exchange closes it (1001)
    server_ping_interval: float | None = None  # seconds between the server's pings
    pong_timeout: float | None = None  # a ping unanswered this long disconnects (with pings on)
    # Per client IP
    connection_attempts: tuple[int, float] | None = None  # (attempts, window seconds): then 429
    ban_seconds: float = 120.0  # the 418 ban for an attempt made while told to wait
    max_request_line: int | None = None  # bytes of the HTTP request line; longer: 414
    rest_weight_per_minute: int | None = None  # REST request weight, sliding 60 s; then 429
    # False: record violations, close and refuse nothing
    enforce: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.enforce, bool):
            raise ValueError(f"ExchangeRules.enforce must be a bool, not {self.enforce!r}")
        attempts = self.connection_attempts
        if attempts is not None and not (
            isinstance(attempts, tuple)
            and len(attempts) == 2
            and _positive(attempts[0], whole=True)
            and _positive(attempts[1])
        ):
            raise ValueError(
                "ExchangeRules.connection_attempts must be None or (attempts > 0, "
                f"window seconds > 0), not {attempts!r}"
            )
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in ("enforce", "connection_attempts") or value is None:
                continue
            whole = spec.name in _WHOLE
            if not _positive(value, whole=whole):
                kind = "an int > 0" if whole else "a number > 0"
                raise ValueError(f"ExchangeRules.{spec.name} must be None or {kind}, not {value!r}")

    @classmethod
    def binance(cls, **changes: Any) -> ExchangeRules:
        """:data:`BINANCE_SPOT_RULES` with ``changes`` (e.g. a short ``max_connection_age``)."""
        return replace(BINANCE_SPOT_RULES, **changes)


_WHOLE = frozenset(
    {
        "max_client_messages_per_second",
        "max_streams_per_connection",
        "max_request_line",
        "rest_weight_per_minute",
    }
)


def _positive(value: object, *, whole: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if whole and not isinstance(value, int):
        return False
    return math.isfinite(value) and value > 0


# Binance spot market-data streams and REST API, as published (developers.binance.com, 2026):
# 5 incoming messages per second per connection (ping, pong and JSON control messages count);
# 1024 streams per connection; 300 connection attempts per 5 minutes per IP; 24 h per
# connection; a ping every 20 s and a disconnect after 1 min without a pong; 6000 REST request
# weight per minute per IP. The request line limit (8 KiB) and the 2-minute first ban are ours.
BINANCE_SPOT_RULES = ExchangeRules(
    max_client_messages_per_second=5,
    max_streams_per_connection=1024,
    max_connection_age=86_400.0,
    server_ping_interval=20.0,
    pong_timeout=60.0,
    connection_attempts=(300, 300.0),
    ban_seconds=120.0,
    max_request_line=8192,
    rest_weight_per_minute=6000,
)


@dataclass(frozen=True)
class Violation:
    """One broken rule: ``kind`` is ``client_messages``, ``streams_per_connection``,
    ``connection_attempts`` (a 429), ``banned`` (a 418), ``pong_timeout``, ``request_line``
    or ``rest_weight``."""

    kind: str
    detail: str
    at: float  # time.monotonic()
    connection_id: int | None = None


class SlidingWindow:
    """Events in the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._times: deque[tuple[float, int]] = deque()
        self._total = 0

    def count(self, now: float) -> int:
        while self._times and self._times[0][0] <= now - self.window:
            self._total -= self._times.popleft()[1]
        return self._total

    def add(self, now: float, weight: int = 1) -> int:
        """Record an event; return the count in the window, this one included."""
        self.count(now)
        self._times.append((now, weight))
        self._total += weight
        return self._total

    def free_in(self, now: float, room: int) -> float:
        """Seconds until the window's count is at most ``room`` (0.0: now)."""
        total = self.count(now)
        for at, weight in self._times:
            if total <= room:
                break
            total -= weight
            if total <= room:
                return at + self.window - now
        return 0.0


class GateAnswer(NamedTuple):
    status: int  # 0: let through; 429: told to wait; 418: banned
    retry_after: int  # seconds, for the Retry-After header
    detail: str


class AttemptGate:
    """Connection attempts (or REST weight) per client IP: over the window -> 429 with
    ``Retry-After`` (seconds until the window allows one again); an attempt made while told to
    wait -> 418, banned for ``ban_seconds``; every attempt during a ban -> 418. Only attempts
    let through count."""

    def __init__(
        self, limit: int, window: float, ban_seconds: float, unit: str = "connection attempts"
    ) -> None:
        self.limit = limit
        self.unit = unit
        self.window = window
        self.ban_seconds = ban_seconds
        self._windows: dict[str, SlidingWindow] = {}
        self._told: dict[str, float] = {}  # ip -> until when it was told to wait
        self._banned: dict[str, float] = {}  # ip -> ban end

    def attempt(self, ip: str, now: float, enforce: bool = True, weight: int = 1) -> GateAnswer:
        window = self._windows.setdefault(ip, SlidingWindow(self.window))
        if enforce:
            banned = self._banned.get(ip, 0.0)
            if now < banned:
                return GateAnswer(418, _seconds(banned - now), "attempt during a ban")
            if now < self._told.get(ip, 0.0):
                self._banned[ip] = now + self.ban_seconds
                return GateAnswer(418, _seconds(self.ban_seconds), "attempt while told to wait")
        if window.count(now) + weight > self.limit:
            wait = window.free_in(now, self.limit - weight)
            detail = f"over {self.limit} {self.unit} in {self.window:g} s"
            if enforce:
                self._told[ip] = now + wait
                return GateAnswer(429, _seconds(wait), detail)
            window.add(now, weight)
            return GateAnswer(0, 0, detail)  # recorded, let through
        window.add(now, weight)
        return GateAnswer(0, 0, "")


def _seconds(delay: float) -> int:
    return max(1, math.ceil(delay))
