"""The market controls of :class:`~wsmanager.testing.FakeExchange` that v3 added: the USD-M
routes' URLs, what a connection on the wrong route is withholding, and restarting a stream's ids.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ..endpoints import USDM_ROUTES
from .market import Market
from .server import ExchangeServer

__all__ = ["MarketControls"]

T = TypeVar("T")


class MarketControls:
    """Mixed into ``FakeExchange``; every call runs on the exchange's loop thread."""

    _market: Market
    _server: ExchangeServer
    host: str

    def _run_sync(self, function: Callable[[], T], timeout: float = 10) -> T:
        raise NotImplementedError

    def _scheme(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def market(self) -> str:
        """``"spot"``, ``"usdm"`` or ``"coinm"``."""
        return self._market.kind

    @property
    def root_url(self) -> str:
        """``ws://127.0.0.1:<port>``: the root a routed ``WSManager(url=..., endpoint="usdm")``
        takes (its connections open ``<root>/public/...`` and ``<root>/market/...``)."""
        return f"{self._scheme()}://{self.host}:{self.port}"

    def route_url(self, route: str) -> str:
        """The ``/ws/`` base of a USD-M route: ``ws://127.0.0.1:<port>/public/ws/``."""
        if route not in USDM_ROUTES:
            raise ValueError(f"route must be one of {', '.join(USDM_ROUTES)}, not {route!r}")
        return f"{self.root_url}/{route}/ws/"

    def withheld(self) -> list[tuple[int, str]]:
        """``(connection id, stream)`` of each stream an open connection carries and never gets:
        on a USD-M market, the streams of the other route, or every stream on the root."""

        def run() -> list[tuple[int, str]]:
            return [
                (client.id, stream)
                for client in self._server.streams.clients.values()
                for stream in client.withheld()
            ]

        return self._run_sync(run)

    def restart_ids(self, stream: str, start: int = 1) -> None:
        """Start ``stream``'s sequence again at ``start`` (a testnet reset, a relisted symbol):
        trade ``t``, aggTrade ``a`` (its REST history forgotten), bookTicker ``u``, a counter;
        for a depth stream, the symbol's book update ids. Also for setting a large start."""
        if isinstance(start, bool) or not isinstance(start, int) or start < 1:
            raise ValueError(f"start must be an int >= 1, not {start!r}")
        self._run_sync(lambda: self._market.restart_ids(stream, start))
