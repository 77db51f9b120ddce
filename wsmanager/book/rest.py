"""The exchange's REST API, politely: a process-wide weight budget per host, timeouts,
full-jitter retries, ``Retry-After`` honoured, and depth snapshots at most once a second per book.

The exchange counts a *weight* per request (``/api/v3/depth`` costs 5 to 250 depending on
``limit``, ``/api/v3/aggTrades`` 4) and bans an IP that goes over its limit (Binance spot: 6000
per minute; 429 first, then 418 with ``Retry-After``). Every :class:`RestClient` of a process
draws from the one :class:`WeightBudget` of its host (:func:`weight_budget`), which also
remembers a ``Retry-After`` pause for everybody and follows the exchange's own count
(``X-MBX-USED-WEIGHT-1M``), so other programs on the same IP are accounted for.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from .._redact import redact_text, redact_url
from ..backoff import BackoffPolicy, parse_retry_after
from ..errors import WSManagerError
from .sync import DepthSnapshot
from .transfer import AnswerTooLarge, TransferCut, bounded_get, new_session

__all__ = [
    "AGG_TRADES_PATH",
    "AGG_TRADES_PATHS",
    "AGG_TRADES_WEIGHT",
    "DEPTH_PATH",
    "DEPTH_PATHS",
    "RestClient",
    "RestError",
    "RestNotSentError",
    "RestRejectedError",
    "SnapshotFetcher",
    "WeightBudget",
    "depth_weight",
    "retry_delay",
    "snapshot_bounds",
    "weight_budget",
]

log = logging.getLogger("wsmanager.book")

DEPTH_PATH = "/api/v3/depth"
AGG_TRADES_PATH = "/api/v3/aggTrades"
# Each market's own paths (futures: nothing under /api/v3 exists there)
DEPTH_PATHS = {"spot": DEPTH_PATH, "usdm": "/fapi/v1/depth", "coinm": "/dapi/v1/depth"}
AGG_TRADES_PATHS = {
    "spot": AGG_TRADES_PATH,
    "usdm": "/fapi/v1/aggTrades",
    "coinm": "/dapi/v1/aggTrades",
}
AGG_TRADES_WEIGHT = 4
DEFAULT_WEIGHT_LIMIT = 6000  # Binance spot, per IP
DEFAULT_WEIGHT_WINDOW = 60.0  # seconds
DEFAULT_RETRY = BackoffPolicy(base_delay=0.5, max_delay=30.0)
MAX_ANSWER_BYTES = 32 * 2**20  # any answer; a snapshot's cap follows its limit (below)
SNAPSHOT_LEVEL_BYTES = 128  # a cap per level: ["30551.23000000","1.44356000"], is 32 bytes
_USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
_rng = random.Random()


def depth_weight(limit: int) -> int:
    """The request weight of ``GET /api/v3/depth?limit=...`` (Binance spot)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 5000:
        raise ValueError(f"limit must be an int in 1..5000, got {limit!r}")
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


# -- errors ----------------------------------------------------------------------------------


class RestError(WSManagerError):
    """A REST request failed in a way worth retrying (network, timeout, 5xx, 429/418, bad JSON).

    ``status_code`` is None when there was no HTTP answer; ``retry_after`` (seconds) is set when
    the exchange said how long to wait; ``code``/``reason`` are the exchange's error, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int | None = None,
        code: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class RestRejectedError(RestError):
    """The exchange refused the request for good (4xx other than 408/418/429, a redirect):
    an unknown symbol, a bad parameter. Retrying would not help."""


class RestNotSentError(RestError):
    """The request was not sent: stopped, or the weight budget (or a ``Retry-After`` pause)
    would not allow it before the caller's deadline."""


# -- the weight budget -------------------------------------------------------------------------


class WeightBudget:
    """At most ``limit`` request weight in any ``window`` seconds, plus a pause (``Retry-After``).

    Thread-safe; one per host and process via :func:`weight_budget`.
    """

    def __init__(
        self, limit: int = DEFAULT_WEIGHT_LIMIT, window: float = DEFAULT_WEIGHT_WINDOW
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError(
                f"weight budget needs limit >= 1 and window > 0, got {limit}, {window}"
            )
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()  # guards _spent, _total, _paused_until, counters
        self._spent: deque[tuple[float, int]] = deque()  # (monotonic time, weight)
        self._total = 0
        self._paused_until = 0.0
        self.waits = 0  # reservations that had to wait

    def used(self) -> int:
        """Weight spent in the current window."""
        with self._lock:
            self._expire(time.monotonic())
            return self._total

    def paused_for(self) -> float:
        """Seconds left of a ``Retry-After`` pause (0.0 when none)."""
        with self._lock:
            return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """No reservation succeeds for ``seconds`` (the exchange said 429/418 + Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def observe_used(self, used: int) -> None:
        """The exchange says this IP spent ``used`` weight: count what we did not see ourselves."""
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if used > self._total:
                self._spent.append((now, used - self._total))
                self._total = used

    def reserve(
        self,
        weight: int,
        *,
        stop: threading.Event | None = None,
        deadline: float | None = None,
    ) -> bool:
        """Spend ``weight`` once the window and any pause allow it; wait until then.

        Returns False, without spending, if ``stop`` is set or waiting would pass ``deadline``
        (a ``time.monotonic()`` value).
        """
        if weight > self.limit:
            raise ValueError(f"a request of weight {weight} can never fit a budget of {self.limit}")
        waiter = stop or threading.Event()
        waited = False
        while True:
            now = time.monotonic()
            with self._lock:
                self._expire(now)
                wait = max(self._paused_until - now, self._wait_for_room(weight, now))
                if wait <= 0:
                    self._spent.append((now, weight))
                    self._total += weight
                    if waited:
                        self.waits += 1
                    return True
            if deadline is not None and now + wait > deadline:
                return False
            waited = True
            if waiter.wait(wait):
                return False

    def _wait_for_room(self, weight: int, now: float) -> float:
        excess = self._total + weight - self.limit
        if excess <= 0:
            return 0.0
        for stamp, spent in self._spent:  # the oldest entries leave the window first
            excess -= spent
            if excess <= 0:
                return stamp + self.window - now
        return self.window  # not reached: weight <= limit

    def _expire(self, now: float) -> None:
        spent = self._spent
        while spent and spent[0][0] <= now - self.window:
            self._total -= spent.popleft()[1]


_budgets: dict[str, WeightBudget] = {}
_budgets_lock = threading.Lock()  # guards _budgets


def weight_budget(url: str) -> WeightBudget:
    """The process-wide budget of ``url``'s host (``host:port``), created on first use."""
    parts = urlsplit(url)
    key = f"{parts.scheme}://{parts.netloc.lower()}"
    with _budgets_lock:
        budget = _budgets.get(key)
        if budget is None:
            budget = _budgets[key] = WeightBudget()
        return budget


# -- the client --------------------------------------------------------------------------------


def _retry_after(headers: Mapping[str, str]) -> float | None:
    return parse_retry_after(headers.get("Retry-After"))


def _exchange_error(body: bytes) -> tuple[int | None, str]:
    """The exchange's ``{"code": C, "msg": "..."}`` from an error answer, if it is one."""
    try:
        document = json.loads(body)
        code = document.get("code")
        return (code if isinstance(code, int) else None), str(document.get("msg", ""))
    except (ValueError, AttributeError):
        return None, body[:200].decode("utf-8", "replace")


class RestClient:
    """GET requests to one exchange's REST API (``base_url`` like ``https://api.binance.com``).

    ``session`` is a ``requests.Session`` to reuse (default: a new one, closed by :meth:`close`);
    ``timeout`` bounds each whole request (connect, headers and body), in seconds; ``budget``
    defaults to the process-wide budget of the host; ``proxy`` is the manager's ``proxy``
    option (None: direct, the environment ignored; ``"env"``; or a proxy URL) for a session
    made here.
    """

    def __init__(
        self,
        base_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        budget: WeightBudget | None = None,
        proxy: str | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            shown = redact_url(base_url)
            raise ValueError(f"rest_url must be an http:// or https:// URL, got {shown!r}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.budget = budget or weight_budget(base_url)
        self._own_session = session is None
        self.session = session or new_session(proxy)

    def close(self) -> None:
        if self._own_session:
            self.session.close()

    def get_json(
        self,
        path: str,
        params: Mapping[str, str | int],
        *,
        weight: int,
        stop: threading.Event | None = None,
        deadline: float | None = None,
        on_send: Callable[[], object] | None = None,
        max_bytes: int | None = None,
    ) -> Any:
        """GET ``base_url + path`` and decode its JSON, after reserving ``weight``.

        Raises :class:`RestRejectedError` (permanent), :class:`RestNotSentError` (``stop`` was
        set, or the budget would not allow the request before ``deadline``) or :class:`RestError`
        (worth retrying; also when the whole answer did not arrive within ``timeout`` or by
        ``deadline``, was over ``max_bytes`` (default :data:`MAX_ANSWER_BYTES`), or ``stop`` was
        set while it was in flight: the request is cut short). ``on_send()`` runs just before the
        request goes out.
        """
        target = self.base_url + path
        url = redact_url(self.base_url) + path  # for errors and logs: never the credentials
        if not self.budget.reserve(weight, stop=stop, deadline=deadline):
            paused = self.budget.paused_for()
            raise RestNotSentError(
                f"GET {url}: not sent: "
                + (f"the host is paused for {paused:.1f}s more" if paused else "weight budget")
                + (" (stopped)" if stop is not None and stop.is_set() else ""),
                url=url,
                retry_after=paused or None,
            )
        timeout = self.timeout
        if deadline is not None:
            timeout = max(0.001, min(timeout, deadline - time.monotonic()))
        if on_send is not None:
            on_send()
        try:
            response, body = bounded_get(
                self.session,
                target,
                params,
                deadline=time.monotonic() + timeout,
                max_bytes=MAX_ANSWER_BYTES if max_bytes is None else max_bytes,
                stop=stop,
            )
        except TransferCut as exc:
            what = (
                "stopped" if exc.reason == "stopped" else f"no complete answer within {timeout:g}s"
            )
            raise RestError(f"GET {url}: {what}", url=url) from None
        except requests.Timeout as exc:
            raise RestError(f"GET {url}: no answer within {timeout:g}s", url=url) from exc
        except requests.RequestException as exc:
            detail = redact_text(str(exc), self.base_url)
            raise RestError(f"GET {url}: {detail}", url=url) from exc
        except AnswerTooLarge as exc:
            raise RestError(f"GET {url}: {exc}", url=url) from None
        used = response.headers.get(_USED_WEIGHT_HEADER)
        if used is not None and used.isdigit():
            self.budget.observe_used(int(used))
        status = response.status_code
        if status >= 300:
            self._raise_for(url, status, response.headers, body)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise RestError(
                f"GET {url}: malformed JSON in a {status} answer", url=url, status_code=status
            ) from exc

    def _raise_for(self, url: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        code, reason = _exchange_error(body)
        detail = f"GET {url}: HTTP {status}" + (f" (code {code}: {reason})" if reason else "")
        if status in (418, 429):
            retry_after = _retry_after(headers)
            if retry_after is not None:
                self.budget.pause(retry_after)
                detail += f"; retry after {retry_after:g}s"
            raise RestError(
                detail,
                url=url,
                status_code=status,
                code=code,
                reason=reason,
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            raise RestError(detail, url=url, status_code=status, code=code, reason=reason)
        if status < 400:
            location = headers.get("Location", "?")
            detail += f", redirected to {location}: use that URL as rest_url"
        raise RestRejectedError(detail, url=url, status_code=status, code=code, reason=reason)


def snapshot_bounds(limit: int) -> tuple[int, int]:
    """``(levels per side, body bytes)`` a depth snapshot of ``limit`` may hold: a little over
    ``limit`` (the exchange sends at most ``limit``), and about 4 times the bytes they take.
    A 5000-level snapshot is about 0.35 MB; its cap 1.5 MB."""
    levels = limit + limit // 10 + 10
    return levels, 65536 + 2 * levels * SNAPSHOT_LEVEL_BYTES


def retry_delay(error: RestError, attempt: int, policy: BackoffPolicy) -> float:
    """How long to wait after ``error`` before retry ``attempt``: full jitter, or Retry-After."""
    return max(policy.delay(attempt, _rng), error.retry_after or 0.0)


# -- snapshots for one book --------------------------------------------------------------------


class SnapshotFetcher:
    """Takes depth snapshots of one symbol, at most one request per ``min_interval`` seconds,
    retrying failures with full-jitter backoff (``Retry-After`` honoured) until one succeeds."""

    def __init__(
        self,
        client: RestClient,
        symbol: str,
        limit: int,
        *,
        min_interval: float = 1.0,
        retry: BackoffPolicy = DEFAULT_RETRY,
        path: str = DEPTH_PATH,
    ) -> None:
        self.weight = depth_weight(limit)
        self.path = path  # /api/v3/depth, or a futures market's
        self.max_levels, self.max_bytes = snapshot_bounds(limit)
        self.client = client
        self.params: dict[str, str | int] = {"symbol": symbol.upper(), "limit": limit}
        self.min_interval = min_interval
        self.retry = retry
        self.requests = 0  # requests sent (read from other threads: a plain int is fine)
        self.failures = 0
        self._next_allowed = 0.0  # monotonic

    def fetch(self, stop: threading.Event) -> DepthSnapshot | None:
        """A snapshot, or None once ``stop`` is set. Raises :class:`RestRejectedError`."""
        attempt = 0
        while not stop.is_set():
            wait = self._next_allowed - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return None
            try:
                document = self.client.get_json(
                    self.path,
                    self.params,
                    weight=self.weight,
                    stop=stop,
                    on_send=self._sent,
                    max_bytes=self.max_bytes,
                )
                self._answered()
                return self._check_size(DepthSnapshot.parse(document))
            except RestRejectedError:
                raise
            except (RestError, ValueError) as exc:
                self._answered()
                if stop.is_set():
                    return None
                error = exc if isinstance(exc, RestError) else RestError(str(exc))
                delay = retry_delay(error, attempt, self.retry)
                self.failures += 1
                attempt += 1
                log.warning("depth snapshot failed (%s); retrying in %.2fs", exc, delay)
                if stop.wait(delay):
                    return None
        return None

    def _check_size(self, snapshot: DepthSnapshot) -> DepthSnapshot:
        for side, levels in (("bids", snapshot.bids), ("asks", snapshot.asks)):
            if len(levels) > self.max_levels:
                raise ValueError(
                    f"depth snapshot: {len(levels)} {side}, over the {self.max_levels} a snapshot "
                    f"of limit={self.params['limit']} may hold"
                )
        return snapshot

    def _sent(self) -> None:
        self.requests += 1

    def _answered(self) -> None:
        # Counted from the end of a request, so the exchange sees them min_interval apart even
        # when one took longer to arrive than the next.
        self._next_allowed = time.monotonic() + self.min_interval
