"""wsmanager: shared, self-healing exchange WebSocket streams behind a callback API."""

from __future__ import annotations

from .backoff import RetryDelayInfo
from .book import BackfillError, BookStats, BookView, OrderBook, fetch_agg_trades
from .config import WSManagerConfig
from .core.state import ConnectionState, Gap, Health, StreamInfo, WSManagerMetrics
from .errors import (
    ConnectionFailedError,
    ConnectionLostError,
    HandshakeFailedError,
    HandshakeRejectedError,
    InvalidStreamNameError,
    ManagerClosedError,
    RetriesExhaustedError,
    StreamRejectedError,
    WSManagerError,
)
from .iterate import StreamIterator
from .legacy.compat import connection_migration, get_binance_connection
from .manager import Unsubscribe, WSManager
from .proxy import ProxyAuthError, ProxyError

__version__ = "0.1.0"

__all__ = [
    "BackfillError",
    "BookStats",
    "BookView",
    "ConnectionFailedError",
    "ConnectionLostError",
    "ConnectionState",
    "Gap",
    "HandshakeFailedError",
    "HandshakeRejectedError",
    "Health",
    "InvalidStreamNameError",
    "ManagerClosedError",
    "OrderBook",
    "ProxyAuthError",
    "ProxyError",
    "RetriesExhaustedError",
    "RetryDelayInfo",
    "StreamInfo",
    "StreamIterator",
    "StreamRejectedError",
    "Unsubscribe",
    "WSManager",
    "WSManagerConfig",
    "WSManagerError",
    "WSManagerMetrics",
    "__version__",
    "connection_migration",
    "fetch_agg_trades",
    "get_binance_connection",
]
