"""Named presets of the exchange's endpoints: where each one is and the rules it needs (pure).

``WSManager(endpoint="usdm-market")`` takes the preset's URL and its rules as defaults; options
the caller passes win, and ``url=`` wins for the address while the preset's rules still apply.
Each :class:`Endpoint` keeps the exchange's published limits beside the values we use (which stay
under them) and ``source``, the documentation page the numbers come from; docs/endpoints.md
cites them all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["ENDPOINTS", "Endpoint", "apply_endpoint", "get_endpoint"]

_SPOT_SOURCE = "https://developers.binance.com/en/docs/products/spot/web-socket-streams"
_TESTNET_SOURCE = "https://developers.binance.com/en/docs/products/spot/testnet/web-socket-streams"
_USDM_SOURCE = (
    "https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams"
)
_COINM_SOURCE = (
    "https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams"
)
_DAY = 24 * 3600.0
# The WebSocket API of each spot preset (user data streams; web-socket-api.md of the spot docs)
_WS_API_URLS = {
    "spot": "wss://ws-api.binance.com:443/ws-api/v3",
    "spot-testnet": "wss://ws-api.testnet.binance.vision/ws-api/v3",
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
    # The WebSocket API (user data streams, WSManager.user_data); None: the endpoint has none
    ws_api_url: str | None = None

    def options(self) -> dict[str, Any]:
        """The preset's rules as ``WSManager`` keyword arguments."""
        return {
            "max_client_messages_per_second": self.max_client_messages_per_second,
            "ping_interval": self.ping_interval,
            "streams_per_connection": self.streams_per_connection,
            "max_connection_age": self.max_connection_age,
            "rest_url": self.rest_url,
        }


def _spot(name: str, url: str, rest_url: str, description: str, source: str) -> Endpoint:
    return Endpoint(
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


def _futures(name: str, url: str, rest_url: str, description: str, source: str) -> Endpoint:
    return Endpoint(
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
            _spot(
                "spot-testnet",
                "wss://stream.testnet.binance.vision/ws",
                "https://testnet.binance.vision",
                "Binance spot test network",
                _TESTNET_SOURCE,
            ),
            _futures(
                "usdm-public",
                "wss://fstream.binance.com/public/ws",
                "https://fapi.binance.com",
                "Binance USD-M futures, high-frequency public data (@depth, @bookTicker)",
                _USDM_SOURCE,
            ),
            _futures(
                "usdm-market",
                "wss://fstream.binance.com/market/ws",
                "https://fapi.binance.com",
                "Binance USD-M futures, regular market data (@aggTrade, @markPrice, @kline)",
                _USDM_SOURCE,
            ),
            _futures(
                "coinm",
                "wss://dstream.binance.com/ws",
                "https://dapi.binance.com",
                "Binance COIN-M futures market streams",
                _COINM_SOURCE,
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
        return {**options, "url": url}
    return {**endpoint.options(), **options, "url": endpoint.url if url is None else url}
