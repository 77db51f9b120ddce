"""How long to wait: full-jitter exponential backoff as a value (a pure policy plus a preview
of it), and the exchange's own ``Retry-After``, read strictly (:func:`parse_retry_after`)."""

from __future__ import annotations

import datetime
import email.utils
import math
import random
import re
import time
from dataclasses import dataclass

__all__ = ["MAX_RETRY_AFTER", "BackoffPolicy", "RetryDelayInfo", "parse_retry_after"]

MAX_RETRY_AFTER = 3 * 24 * 3600.0  # seconds: Binance bans last from 2 minutes to 3 days
_DIGITS = re.compile(r"[0-9]+")  # ASCII only: str.isdigit() also says yes to "\u00b2", "\uff13"
_DATE = re.compile(r"[A-Za-z0-9 ,:+-]+")  # the characters of an HTTP date (RFC 9110's 3 forms)
_MAX_DATE = 64  # characters: an HTTP date is 29 or 30


def parse_retry_after(value: object, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None: absent, or anything but ASCII
    digits (delta-seconds) or an HTTP date (GMT when it names no zone); capped to
    ``0 .. MAX_RETRY_AFTER``.

    A header is what a server sends: whatever it holds, this returns a finite number in range
    or None, and never raises (``inf``, ``1e20``, ``-5``, a superscript digit, a date in the
    year 9999 or 99999 included). ``now``: the wall clock (``time.time()``) a date counts from.
    """
    if not isinstance(value, str):
        return None
    text = value.strip(" \t")
    if _DIGITS.fullmatch(text):
        digits = text.lstrip("0")
        if len(digits) > 9:  # more than 31 years: capped anyway (and int() stays cheap)
            return MAX_RETRY_AFTER
        return min(float(int(digits or "0")), MAX_RETRY_AFTER)
    if len(text) > _MAX_DATE or not _DATE.fullmatch(text):
        return None
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:  # "-0000" (email.utils.formatdate's) or none: HTTP dates are GMT
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryDelayInfo:
    """What :meth:`BackoffPolicy.preview` says about the wait before retry ``attempt``."""

    attempt: int
    base_delay: float
    max_delay: float
    exponential_delay: float
    capped_delay: float
    min_delay: float
    max_jitter_delay: float
    sample_delay: float


@dataclass(frozen=True)
class BackoffPolicy:
    """Before retry ``n`` (0-based count of consecutive failures) wait
    ``uniform(0, min(max_delay, base_delay * 2**n))`` ("full jitter")."""

    base_delay: float
    max_delay: float

    def exponential(self, attempt: int) -> float:
        """``base_delay * 2**attempt``, without overflowing for huge attempts."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        if attempt > 1023:  # 2.0**1024 overflows a float
            return float("inf")
        return self.base_delay * 2.0**attempt

    def window(self, attempt: int) -> float:
        """The upper end of the jitter window before retry ``attempt``."""
        return min(self.max_delay, self.exponential(attempt))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """One draw from the full-jitter window before retry ``attempt``."""
        return (rng or random).uniform(0.0, self.window(attempt))

    def preview(self, attempt: int, rng: random.Random | None = None) -> RetryDelayInfo:
        """Every number behind the wait before retry ``attempt``, plus one sample."""
        if isinstance(attempt, bool) or not isinstance(attempt, int):
            raise TypeError(f"attempt must be an int, not {type(attempt).__name__}")
        capped = self.window(attempt)
        return RetryDelayInfo(
            attempt=attempt,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            exponential_delay=self.exponential(attempt),
            capped_delay=capped,
            min_delay=0.0,
            max_jitter_delay=capped,
            sample_delay=self.delay(attempt, rng),
        )
