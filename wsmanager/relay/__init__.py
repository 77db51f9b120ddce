"""Relay exchange streams into Redis Streams, and read them anywhere (the ``relay`` extra).

- :class:`Relay`: one machine holds the exchange connections and appends every message to
  ``wsmanager:<stream>``; relays of one group elect an active writer, the others stand by.
- :class:`RelayClient`: ``subscribe`` with the manager's semantics, reading Redis.

See docs/relay.md for deployment, retention and what survives which failure. The names load
on first use, so ``wsmanager relay --help`` works without redis-py installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import GapCallback, RelayClient, StreamKeyError, Unsubscribe
    from .entries import DEFAULT_KEY_PREFIX, sequence_field, stream_key
    from .relay import Relay
    from .state import RelayClientMetrics, RelayMetrics, RelayStreamInfo, Role

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "GapCallback",
    "Relay",
    "RelayClient",
    "RelayClientMetrics",
    "RelayMetrics",
    "RelayStreamInfo",
    "Role",
    "StreamKeyError",
    "Unsubscribe",
    "sequence_field",
    "stream_key",
]

_HOMES = {
    "GapCallback": ".client",
    "RelayClient": ".client",
    "StreamKeyError": ".client",
    "Unsubscribe": ".client",
    "DEFAULT_KEY_PREFIX": ".entries",
    "sequence_field": ".entries",
    "stream_key": ".entries",
    "Relay": ".relay",
    "RelayClientMetrics": ".state",
    "RelayMetrics": ".state",
    "RelayStreamInfo": ".state",
    "Role": ".state",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(home, __name__)
    except ImportError as exc:
        if exc.name != "redis" and not str(exc.name or "").startswith("redis."):
            raise
        raise ImportError("wsmanager.relay needs redis-py: pip install 'wsmanager[relay]'") from exc
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
