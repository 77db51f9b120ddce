"""Named presets of the exchange's endpoints: where each one is and the rules it needs (pure).

``WSManager(endpoint="usdm-market")`` takes the preset's URL and its rules as defaults; options
the caller passes win, and ``url=`` wins for the address while the preset's rules still apply.
``usdm`` is *routed*: its ``url`` is the root, and each stream goes to the route that serves it
(:func:`usdm_route`: ``/public`` or ``/market``), a connection never carrying two routes.
Each :class:`Endpoint` keeps the exchange's published limits beside the values we use (which stay
under them) and ``source``, the documentation page the numbers come from; docs/endpoints.md
cites them all.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DECOMMISSIONED_ROOTS",
    "ENDPOINTS",
    "USDM_ROUTES",
    "Endpoint",
    "apply_endpoint",
    "check_message_rate",
    "get_endpoint",
    "route_refusal",
    "usdm_route",
]

_SPOT_SOURCE = "https://developers.binance.com/en/docs/products/spot/web-socket-streams"
_SBE_SOURCE = "https://developers.binance.com/docs/binance-spot-api-docs/sbe-market-data-streams"
_TESTNET_SOURCE = "https://developers.binance.com/en/docs/products/spot/testnet/web-socket-streams"
_USDM_SOURCE = (
    "https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams"
)
_COINM_SOURCE = (
    "https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams"
)
_ROUTES_SOURCE = (
    "https://developers.binance.com/docs/derivatives/usds-margined-futures/"
    "websocket-market-streams/Important-WebSocket-Change-Notice"
)
_DEMO_SOURCE = "https://developers.binance.com/docs/binance-spot-api-docs/demo-mode/general-info"
_DAY = 24 * 3600.0
_SPOT_REST = ("/api/v3/depth", "/api/v3/aggTrades")
_USDM_REST = ("/fapi/v1/depth", "/fapi/v1/aggTrades")
_COINM_REST = ("/dapi/v1/depth", "/dapi/v1/aggTrades")

USDM_ROUTES = ("public", "market")
"""The routes of USD-M market data since 2026-04-23, in the order the docs list them."""

# USD-M's split: /public carries the high-frequency book streams, /market every other market
# stream (Binance's "Important WebSocket Change Notice", 2026-03-06).
_PUBLIC_KINDS = frozenset({"depth", "bookTicker", "rpiDepth"})
_MARKET_KINDS = frozenset(
    {
        "aggTrade",
        "markPrice",
        "kline",
        "continuousKline",
        "miniTicker",
        "ticker",
        "forceOrder",
        "compositeIndex",
        "assetIndex",
        "indexPrice",
        "markPriceKline",
        "indexPriceKline",
    }
)
_PUBLIC_ALL = frozenset({"!bookTicker"})
_MARKET_ALL = frozenset(
    {
        "!markPrice@arr",
        "!markPrice@arr@1s",
        "!miniTicker@arr",
        "!ticker@arr",
        "!forceOrder@arr",
        "!contractInfo",
        "!assetIndex@arr",
    }
)

DECOMMISSIONED_ROOTS = frozenset(
    {
        "wss://fstream.binance.com/ws",
        "wss://fstream.binance.com/stream",
        "wss://fstream.binance.com:443/ws",
        "wss://fstream.binance.com:443/stream",
    }
)
"""USD-M market-data roots that accept ``SUBSCRIBE`` and then send nothing since 2026-04-23."""


def _kind(stream: str) -> str:
    """``btcusdt@depth@100ms``, ``btcusdt@depth5`` -> ``depth``; ``btcusdt@kline_1m`` ->
    ``kline``; ``btcusdt_perp@continuousKline_1m`` -> ``continuousKline``."""
    kind = stream.split("@")[1] if "@" in stream else ""
    kind = kind.split("_", 1)[0]
    return kind.rstrip("0123456789") if kind.startswith(("depth", "rpiDepth")) else kind


def usdm_route(stream: str) -> str | None:
    """The USD-M route that serves ``stream`` (``"public"`` or ``"market"``), None if unknown.

    ``/public``: ``@depth`` (every speed, ``@depth<N>``), ``@bookTicker``, ``!bookTicker``,
    ``@rpiDepth``; ``/market``: ``@aggTrade``, ``@markPrice``, ``@kline_*``,
    ``@continuousKline_*``, tickers, liquidations, ``!contractInfo``, index streams...
    """
    if stream.startswith("!"):
        if stream in _PUBLIC_ALL:
            return "public"
        return "market" if stream in _MARKET_ALL else None
    kind = _kind(stream)
    if kind in _PUBLIC_KINDS:
        return "public"
    return "market" if kind in _MARKET_KINDS else None


def route_refusal(stream: str, routes: tuple[str, ...]) -> str | None:
    """Why an endpoint serving ``routes`` cannot carry ``stream`` (None: it can).

    A routed endpoint (both routes) refuses a stream whose route is unknown; a single-route
    endpoint refuses the known streams of the other route (unknown ones are let through)."""
    if not routes:
        return None
    route = usdm_route(stream)
    public, market = USDM_ROUTES
    if route is None and len(routes) > 1:
        return (
            f"its USD-M route is unknown: /{public} carries @depth*, @bookTicker, !bookTicker and "
            f"@rpiDepth; /{market} carries @aggTrade, @markPrice, @kline_*, tickers and the "
            f"other market streams (to send it anyway, use endpoint='usdm-{public}' or "
            f"'usdm-{market}')"
        )
    if route is not None and route not in routes:
        return (
            f"it belongs to the USD-M /{route} route and this endpoint serves only "
            f"/{'/'.join(routes)}: use endpoint='usdm' (both routes) or 'usdm-{route}'"
        )
    return None


# The WebSocket API of each spot preset (user data streams; web-socket-api.md of the spot docs)
_WS_API_URLS = {
    "spot": "wss://ws-api.binance.com:443/ws-api/v3",
    "spot-testnet": "wss://ws-api.testnet.binance.vision/ws-api/v3",
}
_PRIVATE_URLS = {  # futures user data streams (listenKeys)
    "usdm": "wss://fstream.binance.com/private/ws",
    "usdm-testnet": "wss://fstream.binancefuture.com/ws/{listenKey}",
    "usdm-public": "wss://fstream.binance.com/private/ws",
    "usdm-market": "wss://fstream.binance.com/private/ws",
    "coinm": "wss://dstream.binance.com/ws/{listenKey}",
}
_LISTEN_KEY_PATHS = {
    "usdm": "/fapi/v1/listenKey",
    "usdm-testnet": "/fapi/v1/listenKey",
    "usdm-public": "/fapi/v1/listenKey",
    "usdm-market": "/fapi/v1/listenKey",
    "coinm": "/dapi/v1/listenKey",
}


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One endpoint of the exchange: its URLs, the rules we keep there, and where they are from.

    ``url`` is the ``/ws`` base (the manager appends ``/<stream>`` or turns it into
    ``/stream?streams=``); ``rest_url`` is the REST API's base for order-book snapshots and
    backfill. The rules are ``WSManager`` options; the ``exchange_*`` fields are the exchange's
    own published limits (None: not published, or not confirmed).
    """

    name: str
    url: str
    rest_url: str
    description: str
    # The rules, as WSManager options (kept under the exchange's limits)
    max_client_messages_per_second: float
    ping_interval: float
    streams_per_connection: int
    max_connection_age: float | None
    # The exchange's published limits
    exchange_messages_per_second: int | None
    exchange_streams_per_connection: int | None
    exchange_ping_interval: float | None  # seconds between the server's pings
    exchange_connection_lifetime: float | None  # seconds until the server closes a connection
    source: str
    # The exchange's procedures (v3): which market, its REST paths, its USD-M routes
    market: str = "spot"  # "spot", "usdm" or "coinm": order books and sequences follow it
    depth_path: str = _SPOT_REST[0]  # REST depth snapshot, under rest_url
    agg_trades_path: str = _SPOT_REST[1]  # REST aggregate trades (backfill), under rest_url
    routes: tuple[str, ...] = ()  # USD-M routes served: both (routed: url is the root), or one
    routes_source: str | None = None
    # How market data arrives: "json" text frames, or "sbe" binary frames (an API key needed)
    encoding: str = "json"

    @property
    def futures(self) -> bool:
        return self.market != "spot"

    @property
    def routed(self) -> bool:
        """Each stream goes to its route under the root ``url`` (``usdm``)."""
        return len(self.routes) > 1

    # The WebSocket API (user data streams, WSManager.user_data); None: the endpoint has none
    ws_api_url: str | None = None
    # Futures user data: the listenKey REST path on rest_url (ws_api_url is then the private
    # stream's URL, with {listenKey} or followed by ?listenKey=)
    listen_key_path: str | None = None

    def options(self) -> dict[str, Any]:
        """The preset's rules as ``WSManager`` keyword arguments."""
        return {
            "max_client_messages_per_second": self.max_client_messages_per_second,
            "ping_interval": self.ping_interval,
            "streams_per_connection": self.streams_per_connection,
            "max_connection_age": self.max_connection_age,
            "rest_url": self.rest_url,
            "encoding": self.encoding,
        }


def _spot(name: str, url: str, rest_url: str, description: str, source: str) -> Endpoint:
    return Endpoint(
        market="spot",
        name=name,
        url=url,
        rest_url=rest_url,
        description=description,
        max_client_messages_per_second=4.0,
        ping_interval=20.0,
        streams_per_connection=200,
        max_connection_age=23 * 3600.0,
        exchange_messages_per_second=5,
        exchange_streams_per_connection=1024,
        exchange_ping_interval=20.0,
        exchange_connection_lifetime=_DAY,
        source=source,
        ws_api_url=_WS_API_URLS.get(name),
    )


def _futures(
    name: str,
    url: str,
    rest_url: str,
    description: str,
    source: str,
    *,
    market: str = "usdm",
    routes: tuple[str, ...] = (),
) -> Endpoint:
    paths = _USDM_REST if market == "usdm" else _COINM_REST
    return Endpoint(
        market=market,
        depth_path=paths[0],
        agg_trades_path=paths[1],
        routes=routes,
        routes_source=_ROUTES_SOURCE if routes else None,
        name=name,
        url=url,
        rest_url=rest_url,
        description=description,
        max_client_messages_per_second=8.0,
        ping_interval=20.0,
        streams_per_connection=200,
        max_connection_age=23 * 3600.0,
        exchange_messages_per_second=10,
        exchange_streams_per_connection=1024,  # 200 on older copies of the page: we keep 200
        exchange_ping_interval=180.0,
        exchange_connection_lifetime=_DAY,
        source=source,
        ws_api_url=_PRIVATE_URLS.get(name),
        listen_key_path=_LISTEN_KEY_PATHS.get(name),
    )


ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType(
    {
        endpoint.name: endpoint
        for endpoint in (
            _spot(
                "spot",
                "wss://stream.binance.com:9443/ws",
                "https://api.binance.com",
                "Binance spot market streams",
                _SPOT_SOURCE,
            ),
            _spot(
                "spot-data",
                "wss://data-stream.binance.vision/ws",
                "https://data-api.binance.vision",
                "Binance spot, market data only (no user data streams)",
                _SPOT_SOURCE,
            ),
            dataclasses.replace(
                _spot(
                    "spot-sbe",
                    "wss://stream-sbe.binance.com:9443/ws",
                    "https://api.binance.com",
                    "Binance spot market data in SBE (@trade, @bestBidAsk, @depth 20 ms, "
                    "@depth20); needs api_key",
                    _SBE_SOURCE,
                ),
                encoding="sbe",
            ),
            _spot(
                "spot-testnet",
                "wss://stream.testnet.binance.vision/ws",
                "https://testnet.binance.vision",
                "Binance spot test network",
                _TESTNET_SOURCE,
            ),
            _spot(
                "spot-demo",
                "wss://demo-stream.binance.com/ws",
                "https://demo-api.binance.com",
                "Binance spot demo mode (real market data, simulated accounts)",
                _DEMO_SOURCE,
            ),
            _futures(
                "usdm",
                "wss://fstream.binance.com",
                "https://fapi.binance.com",
                "Binance USD-M futures, every market stream, each to its route",
                _USDM_SOURCE,
                routes=USDM_ROUTES,
            ),
            _futures(
                "usdm-public",
                "wss://fstream.binance.com/public/ws",
                "https://fapi.binance.com",
                "Binance USD-M futures, high-frequency public data (@depth, @bookTicker)",
                _USDM_SOURCE,
                routes=("public",),
            ),
            _futures(
                "usdm-market",
                "wss://fstream.binance.com/market/ws",
                "https://fapi.binance.com",
                "Binance USD-M futures, regular market data (@aggTrade, @markPrice, @kline)",
                _USDM_SOURCE,
                routes=("market",),
            ),
            _futures(
                "usdm-testnet",
                "wss://fstream.binancefuture.com/ws",
                "https://testnet.binancefuture.com",
                "Binance USD-M futures test network (not routed)",
                _USDM_SOURCE,
            ),
            _futures(
                "coinm",
                "wss://dstream.binance.com/ws",
                "https://dapi.binance.com",
                "Binance COIN-M futures market streams",
                _COINM_SOURCE,
                market="coinm",
            ),
        )
    }
)


def get_endpoint(endpoint: str | Endpoint) -> Endpoint:
    """The preset called ``endpoint`` (an :class:`Endpoint` is returned as it is).

    Raises ``ValueError`` listing the known names for an unknown one.
    """
    if isinstance(endpoint, Endpoint):
        return endpoint
    if not isinstance(endpoint, str):
        raise TypeError(
            f"endpoint must be a preset name or an Endpoint, not {type(endpoint).__name__}"
        )
    try:
        return ENDPOINTS[endpoint]
    except KeyError:
        raise ValueError(
            f"unknown endpoint {endpoint!r}; the presets are: {', '.join(ENDPOINTS)}"
        ) from None


def apply_endpoint(
    endpoint: Endpoint | None, url: str | None, options: Mapping[str, Any]
) -> dict[str, Any]:
    """``WSManagerConfig`` keyword arguments: the preset's rules, overridden by ``options``,
    and ``url`` (or else the preset's URL)."""
    if endpoint is None:
        if url is None:
            raise TypeError(f"WSManager needs url= or endpoint= (a preset: {', '.join(ENDPOINTS)})")
        settings = {**options, "url": url}
    else:
        settings = {**endpoint.options(), **options, "url": endpoint.url if url is None else url}
    check_message_rate(endpoint, settings)
    return settings


def check_message_rate(endpoint: Endpoint | None, settings: Mapping[str, Any]) -> None:
    """Refuse a ``max_client_messages_per_second`` at or above the exchange's published limit.

    The limit is the preset's ``exchange_messages_per_second``; with a plain ``url=`` it is that
    of the preset whose host the URL names (``stream.binance.com`` -> 5), and there is none for
    any other host (only the config's own ``>= 1`` holds). Raises ``ValueError``.
    """
    rate = settings.get("max_client_messages_per_second")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        return  # the default, or not a number: the config says what is wrong
    if endpoint is None:
        url = settings.get("url")
        host = urlsplit(url).hostname if isinstance(url, str) else None
        found = [e for e in ENDPOINTS.values() if host and urlsplit(e.url).hostname == host]
        endpoint = found[0] if found else None
    if endpoint is None or endpoint.exchange_messages_per_second is None:
        return
    limit = endpoint.exchange_messages_per_second
    if rate >= limit:
        raise ValueError(
            f"max_client_messages_per_second must be under the exchange's limit of {limit} "
            f"messages per second ({endpoint.name!r}: {endpoint.source}), got {rate}; "
            f"the preset uses {endpoint.max_client_messages_per_second:g}"
        )
