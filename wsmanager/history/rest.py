"""The exchange's REST history endpoints, politely: every request draws its weight from the
host's process-wide budget (:func:`wsmanager.book.rest.weight_budget`, which follows
``X-MBX-USED-WEIGHT-1M``), 429/418 answers pause that budget for their ``Retry-After`` (parsed
strictly: ASCII digits or an HTTP date, capped), other failures are retried with full-jitter
backoff, and answers are size-bounded.

Binance spot: ``GET /api/v3/aggTrades`` weighs 4, ``GET /api/v3/klines`` 2; both return at most
1000 rows.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from ..backoff import BackoffPolicy
from ..backoff import parse_retry_after as strict_retry_after
from ..book.rest import weight_budget
from ..config import redact_url
from ..proxy import requests_proxies
from .streams import HistoryError

__all__ = [
    "AGG_TRADES_WEIGHT",
    "KLINES_WEIGHT",
    "MAX_RETRY_AFTER",
    "PAGE_LIMIT",
    "RestSource",
    "parse_retry_after",
]

log = logging.getLogger("wsmanager.history")

AGG_TRADES_WEIGHT = 4
KLINES_WEIGHT = 2
PAGE_LIMIT = 1000
MAX_RETRY_AFTER = 300.0  # seconds: a longer Retry-After is waited this long, then retried
MAX_ANSWER_BYTES = 16 * 2**20
_DIGITS = re.compile(r"[0-9]{1,10}")
_rng = random.Random()


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (the one strict parser,
    :func:`wsmanager.backoff.parse_retry_after`), here capped at :data:`MAX_RETRY_AFTER`: a
    history load waits that long, then tries again."""
    seconds = strict_retry_after(value, now)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER)


class RestSource:
    """GETs to one exchange's REST API (``base_url``, e.g. ``https://api.binance.com``).

    ``attempts`` bounds the tries of one request; ``stop`` cuts every wait short (then
    :class:`HistoryError` says "stopped"). ``proxy`` is the manager's ``proxy`` option.
    """

    def __init__(
        self,
        base_url: str,
        *,
        stream: str,
        stop: threading.Event,
        proxy: str | None = None,
        timeout: float = 10.0,
        attempts: int = 6,
        retry: BackoffPolicy | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"rest_url must be an http:// or https:// URL, got {redact_url(base_url)!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.stream = stream
        self.stop = stop
        self.timeout = timeout
        self.attempts = attempts
        self.retry = retry or BackoffPolicy(base_delay=0.5, max_delay=10.0)
        self.budget = weight_budget(base_url)
        self.session = requests.Session()
        self.session.trust_env = proxy == "env"
        self.session.proxies.update(
            {k: v for k, v in requests_proxies(proxy).items() if v is not None}
        )
        self.requests = 0  # sent (one thread uses a source)
        self.throttled = 0  # 429/418 answers

    def close(self) -> None:
        self.session.close()

    def get(self, path: str, params: Mapping[str, str | int], weight: int) -> Any:
        """The decoded JSON answer; :class:`HistoryError` once ``attempts`` failed, the exchange
        refused for good (4xx), or ``stop`` was set."""
        url = self.base_url + path
        shown = redact_url(url)
        error = ""
        for attempt in range(self.attempts):
            if not self.budget.reserve(weight, stop=self.stop):
                raise HistoryError(self.stream, f"GET {shown}: stopped")
            self.requests += 1
            delay: float | None = None
            try:
                response = self.session.get(
                    url, params=params, timeout=self.timeout, allow_redirects=False, stream=True
                )
                body = _read_body(response)
            except requests.RequestException as exc:
                error = f"{type(exc).__name__}: {exc}"
            except _TooLarge:
                error = f"an answer over {MAX_ANSWER_BYTES} bytes"
            else:
                used = response.headers.get("X-MBX-USED-WEIGHT-1M", "")
                if _DIGITS.fullmatch(used):
                    self.budget.observe_used(int(used))
                status = response.status_code
                if status == 200:
                    try:
                        return json.loads(body)
                    except ValueError:
                        error = "malformed JSON"
                elif status in (418, 429):
                    self.throttled += 1
                    delay = parse_retry_after(response.headers.get("Retry-After"))
                    if delay is not None:
                        self.budget.pause(delay)
                    error = f"HTTP {status}, Retry-After {response.headers.get('Retry-After')!r}"
                elif status >= 500 or status == 408:
                    error = f"HTTP {status}"
                else:
                    reason = body[:200].decode("utf-8", "replace")
                    raise HistoryError(self.stream, f"GET {shown}: HTTP {status}: {reason}")
            if attempt + 1 == self.attempts:
                break
            wait = max(delay or 0.0, self.retry.delay(attempt, _rng))
            log.warning("GET %s failed (%s); retrying in %.2fs", shown, error, wait)
            if self.stop.wait(wait):
                raise HistoryError(self.stream, f"GET {shown}: stopped")
        raise HistoryError(
            self.stream, f"GET {shown}: unreachable after {self.attempts} attempts ({error})"
        )


class _TooLarge(Exception):
    pass


def _read_body(response: requests.Response) -> bytes:
    try:
        body = bytearray()
        for chunk in response.iter_content(65536):
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise _TooLarge
        return bytes(body)
    finally:
        response.close()
