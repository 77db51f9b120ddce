"""One point in monotonic time that several blocking steps share (pure)."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Deadline"]


@dataclass
class Deadline:
    """A point in ``time.monotonic()`` time that several blocking steps share."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def timeout(self, minimum: float = 0.001) -> float:
        """The remaining time as a socket timeout; raises ``TimeoutError`` when it has passed."""
        remaining = self.remaining()
        if remaining <= 0:
            raise TimeoutError("the connection's deadline passed")
        return max(remaining, minimum)
