"""Full-jitter exponential backoff as a value: a pure policy plus a preview of it."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["BackoffPolicy", "RetryDelayInfo"]


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
