"""Local order books and REST backfill: Binance's documented procedure, REST with ``requests``.

- :class:`OrderBook`: a local book kept in sync from ``<symbol>@depth@100ms`` and snapshots.
- :func:`fetch_agg_trades`: missed aggregate trades, shaped like the ``@aggTrade`` stream's.
- :class:`RestClient`, :class:`WeightBudget`: polite REST (a process-wide weight budget per
  host, ``Retry-After`` honoured).
"""

from __future__ import annotations

from .backfill import BackfillError, fetch_agg_trades
from .orderbook import BookStats, BookView, OrderBook, depth_stream
from .rest import (
    RestClient,
    RestError,
    RestNotSentError,
    RestRejectedError,
    WeightBudget,
    depth_weight,
    weight_budget,
)

__all__ = [
    "BackfillError",
    "BookStats",
    "BookView",
    "OrderBook",
    "RestClient",
    "RestError",
    "RestNotSentError",
    "RestRejectedError",
    "WeightBudget",
    "depth_stream",
    "depth_weight",
    "fetch_agg_trades",
    "weight_budget",
]
