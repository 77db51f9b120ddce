"""Missed aggregate trades, fetched from ``GET /api/v3/aggTrades`` in the stream's own shape.

When an ``<symbol>@aggTrade`` stream jumps from id ``n`` to ``m`` the trades ``n+1 .. m-1`` are
still on the exchange: :func:`fetch_agg_trades` pages through them (1000 per request, weight 4
each, drawn from the host's process-wide :class:`~wsmanager.book.rest.WeightBudget`) and
returns them as the stream would have delivered them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from ..backoff import BackoffPolicy
from ..core.state import Gap
from ..errors import WSManagerError
from .rest import (
    AGG_TRADES_PATH,
    AGG_TRADES_WEIGHT,
    DEFAULT_RETRY,
    RestClient,
    RestError,
    RestNotSentError,
    RestRejectedError,
    retry_delay,
)

__all__ = [
    "PAGE_SIZE",
    "BackfillError",
    "agg_trade_payload",
    "fetch_agg_trades",
    "gap_backfill",
]

PAGE_SIZE = 1000  # the endpoint's maximum limit


class BackfillError(WSManagerError):
    """The range could not be fetched. ``trades`` holds what was fetched before the failure
    (in order, starting at ``from_id``); ``__cause__`` is the last REST error, if any."""

    def __init__(
        self, symbol: str, from_id: int, to_id: int, reason: str, trades: list[dict[str, Any]]
    ) -> None:
        super().__init__(
            f"aggregate trades {symbol} {from_id}..{to_id}: {reason} "
            f"({len(trades)} of {to_id - from_id + 1} fetched)"
        )
        self.symbol = symbol
        self.from_id = from_id
        self.to_id = to_id
        self.reason = reason
        self.trades = trades


def agg_trade_payload(trade: Any, symbol: str) -> dict[str, Any]:
    """One REST aggregate trade as the ``@aggTrade`` stream sends it.

    The REST answer has no event time: ``E`` is the trade time ``T``. ``ValueError`` names a
    malformed trade.
    """
    try:
        payload = {
            "e": "aggTrade",
            "E": trade["T"],
            "s": symbol,
            "a": trade["a"],
            "p": trade["p"],
            "q": trade["q"],
            "f": trade["f"],
            "l": trade["l"],
            "T": trade["T"],
            "m": trade["m"],
            "M": trade.get("M", True),
        }
    except (KeyError, TypeError, AttributeError):
        raise ValueError(f"malformed aggregate trade {trade!r:.200}") from None
    ints = (payload["a"], payload["f"], payload["l"], payload["T"])
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
        raise ValueError(f"malformed aggregate trade {trade!r:.200}: ids and time must be ints")
    if not (isinstance(payload["p"], str) and isinstance(payload["q"], str)):
        raise ValueError(f"malformed aggregate trade {trade!r:.200}: p and q must be strings")
    return payload


def fetch_agg_trades(
    rest_url: str,
    symbol: str,
    from_id: int,
    to_id: int,
    *,
    session: requests.Session | None = None,
    timeout: float = 10.0,
    retry: BackoffPolicy = DEFAULT_RETRY,
    stop: threading.Event | None = None,
    proxy: str | None = None,
    path: str = AGG_TRADES_PATH,
) -> list[dict[str, Any]]:
    """The aggregate trades ``from_id..to_id`` (inclusive) of ``symbol``, in order, each shaped
    like an ``<symbol>@aggTrade`` stream payload.

    Pages of up to 1000; REST errors are retried with full-jitter backoff (``Retry-After``
    honoured, for every client of the host) while ``timeout`` seconds, the deadline of the whole
    call, allow. Raises :class:`BackfillError` if the range cannot be covered: the exchange
    refused, ``timeout`` passed, ``stop`` was set, or the answer skipped ids. ``proxy`` is the
    manager's ``proxy`` option, for a session made here. ``path`` is the market's
    (``/api/v3/aggTrades``; futures: ``/fapi/v1/aggTrades``, ``/dapi/v1/aggTrades``).
    """
    for name, value in (("from_id", from_id), ("to_id", to_id)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if to_id < from_id:
        raise ValueError(f"to_id ({to_id}) must be >= from_id ({from_id})")
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout!r}")
    symbol = symbol.upper()
    deadline = time.monotonic() + timeout
    waiter = stop or threading.Event()
    client = RestClient(rest_url, session=session, timeout=timeout, proxy=proxy)
    trades: list[dict[str, Any]] = []

    def fail(reason: str) -> BackfillError:
        return BackfillError(symbol, from_id, to_id, reason, trades)

    try:
        next_id = from_id
        attempt = 0
        while next_id <= to_id:
            params: dict[str, str | int] = {
                "symbol": symbol,
                "fromId": next_id,
                "limit": min(PAGE_SIZE, to_id - next_id + 1),
            }
            try:
                page = client.get_json(
                    path, params, weight=AGG_TRADES_WEIGHT, stop=stop, deadline=deadline
                )
            except (RestRejectedError, RestNotSentError) as exc:
                raise fail(str(exc)) from exc
            except RestError as exc:
                delay = retry_delay(exc, attempt, retry)
                attempt += 1
                if time.monotonic() + delay > deadline:
                    raise fail(f"gave up within the {timeout:g}s timeout: {exc}") from exc
                if waiter.wait(delay):
                    raise fail("stopped") from exc
                continue
            attempt = 0
            next_id = _take_page(page, symbol, next_id, to_id, trades, fail)
        return trades
    finally:
        client.close()


def _take_page(
    page: Any,
    symbol: str,
    next_id: int,
    to_id: int,
    trades: list[dict[str, Any]],
    fail: Callable[[str], BackfillError],
) -> int:
    """Append the page's trades up to ``to_id``; return the next id wanted."""
    if not isinstance(page, list):
        raise fail(f"the answer is not a list: {page!r:.200}")
    if not page:
        raise fail(f"the exchange has no aggregate trade from id {next_id}")
    for trade in page:
        if next_id > to_id:
            break
        try:
            payload = agg_trade_payload(trade, symbol)
        except ValueError as exc:
            raise fail(str(exc)) from None
        if payload["a"] != next_id:
            raise fail(f"the exchange answered id {payload['a']} where {next_id} was expected")
        trades.append(payload)
        next_id += 1
    return next_id


def gap_backfill(
    stream: str, rest_url: str, path: str, proxy: str | None, stop: threading.Event
) -> Callable[[Gap], list[Any]] | None:
    """For an ``@aggTrade`` stream: a function fetching a gap's trades from ``rest_url`` (the
    manager's ``backfill=True``); None for any other stream."""
    symbol, _, kind = stream.partition("@")
    if kind != "aggTrade":
        return None

    def backfill(gap: Gap) -> list[Any]:
        return fetch_agg_trades(
            rest_url,
            symbol.upper(),
            gap.expected,
            gap.received - 1,
            stop=stop,
            proxy=proxy,
            path=path,
        )

    return backfill
