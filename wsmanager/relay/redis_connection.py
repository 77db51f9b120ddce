"""Making redis-py clients the way the relay needs them: our retries, not redis-py's.

redis-py retries a failed command on its own by default. A write retried behind our back could
be applied twice, and a read retried behind our back hides an outage from our backoff, metrics
and health; so its retries are off and every failure reaches our loops.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ..config import redact_url

__all__ = ["connect", "is_connection_error"]

_SCHEMES = ("redis://", "rediss://", "unix://")


def connect(redis_url: str, timeout: float) -> redis.Redis:
    """A client for ``redis_url`` whose every call fails within about ``timeout`` seconds
    (beyond any ``BLOCK`` it asks for) and is never retried by redis-py."""
    if not isinstance(redis_url, str) or not redis_url.startswith(_SCHEMES):
        raise ValueError(
            f"redis_url must start with redis://, rediss:// or unix://, got "
            f"{redact_url(redis_url) if isinstance(redis_url, str) else redis_url!r}"
        )
    try:
        return redis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
            health_check_interval=0,
            max_connections=4,
        )
    except ValueError as exc:
        raise ValueError(f"redis_url {redact_url(redis_url)!r}: {exc}") from None


def is_connection_error(exc: BaseException) -> bool:
    """True for failures of the link or the server's availability (retry later)."""
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))
