"""``wsmanager demo``: the whole story on the bundled exchange, no internet needed.

The exchange enforces Binance's published rules. Eight subscribers on four streams share one
connection; a local order book follows the depth stream; the live view redraws every second.
Then the exchange drops every connection (the streams come back, the gaps are reported, the book
resyncs), and later announces ``serverShutdown`` (the connection is replaced without a gap). When
``redis-server`` is installed, a relay copies the trades into Redis Streams and a consumer reads
them back. The summary checks every promise with a number.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from ..book import OrderBook
from ..manager import WSManager
from ..monitoring import serve_metrics
from .view import LiveView

__all__ = ["DEMO_STREAMS", "run_demo"]

DEMO_STREAMS = {  # stream -> subscribers
    "btcusdt@trade": 3,
    "ethusdt@trade": 2,
    "btcusdt@bookTicker": 2,
    "!miniTicker@arr": 1,
}
BOOK_SYMBOL = "BTCUSDT"
RELAYED = "btcusdt@trade"


class _Counts:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.delivered = 0
        self.relayed: list[int] = []

    def add(self, message: Any) -> None:
        with self._lock:
            self.delivered += 1

    def relay_client(self, message: Any) -> None:
        with self._lock:
            self.relayed.append(message["t"])


def run_demo(seconds: float, rate: float, metrics_port: int) -> int:
    from ..testing import BINANCE_SPOT_RULES, FakeExchange

    counts = _Counts()
    with (
        FakeExchange(rate=rate, rules=BINANCE_SPOT_RULES, seed=1) as exchange,
        WSManager(
            url=exchange.url,
            rest_url=exchange.rest_url,
            base_retry_delay=0.2,
            max_retry_delay=2.0,
            ping_interval=5.0,
            ping_timeout=2.0,
        ) as manager,
        serve_metrics(manager, port=metrics_port) as server,
        _relay(exchange.url, counts) as relay,
    ):
        subscribers = 0
        for name, count in DEMO_STREAMS.items():
            for _ in range(count):
                manager.subscribe(name, counts.add)
                subscribers += 1
        started = time.monotonic()
        book = manager.order_book(BOOK_SYMBOL, limit=100)
        print(
            f"fake exchange at {exchange.url} (Binance's rules enforced); {subscribers} "
            f"subscribers on {len(DEMO_STREAMS)} streams and an order book, {rate:g} msg/s "
            f"each; running {seconds:g}s"
        )
        print(f"metrics and health: curl {server.url}  (add ?format=prometheus for Prometheus)")
        synced_after = book.wait_synced(10) and time.monotonic() - started
        view = LiveView(manager)
        faults: list[tuple[float, str, Any]] = [
            (0.35, "the exchange dropped every connection", exchange.drop),
            (
                0.65,
                "the exchange announced serverShutdown",
                lambda: exchange.server_shutdown(close_after=3.0),
            ),
        ]
        play(manager, view, book, faults, started, seconds, f"order book {BOOK_SYMBOL}")
        metrics = manager.get_metrics()
        endpoint = _fetch_json(server.url)
        violations = exchange.violations()
        relay_figures = relay.figures() if relay is not None else None
    streams = len(DEMO_STREAMS) + 1  # and the order book's depth stream
    print("\n== summary ==")
    print(f"subscribers: {subscribers} and 1 order book; streams: {streams}")
    print(
        f"connections: {metrics.connections} for {streams} streams, "
        f"{metrics.active_connections_hwm} at most (the old and the new during the handover); "
        f"one per subscriber would be "
        f"{subscribers + 1}: sharing saved {1 - metrics.connections / (subscribers + 1):.0%}"
    )
    print(
        f"connection attempts: {metrics.connection_attempts} "
        f"(1 + the reconnect after the drop + the handover); "
        f"rotations (handovers): {metrics.rotations}"
    )
    print(
        f"exchange rules broken: {len(violations)} (5 messages/s, 300 attempts per 5 min, "
        f"1024 streams per connection)"
    )
    print(
        f"messages received: {metrics.messages_received}; delivered to callbacks: "
        f"{counts.delivered}; gaps reported: {metrics.gaps} (the market went on while we were "
        f"away, none at the handover); duplicates dropped: {metrics.duplicates_dropped} (both "
        f"connections carried them during the handover); invalid: "
        f"{metrics.invalid_messages}; dropped by slow callbacks: {metrics.dropped_messages}"
    )
    synced = f"synced after {synced_after * 1000:.0f} ms" if synced_after else "never synced"
    print(
        f"order book {BOOK_SYMBOL}: {synced}; resyncs: {metrics.order_book_resyncs} "
        f"(each gap in its depth stream), snapshots requested: "
        f"{metrics.order_book_snapshot_requests}"
    )
    if relay_figures is None:
        print("relay: skipped (redis-server is not installed: apt-get install redis-server)")
    else:
        print(relay_figures)
    print(
        f"GET {server.url} during the run: HTTP {endpoint[0]}, status {endpoint[1]!r}, "
        f"activeConnections {endpoint[2]}"
    )
    return 0


class _DemoRelay:
    """A relay of one stream into a private redis-server, and a consumer reading it back."""

    def __init__(self, relay: Any, client: Any, counts: _Counts) -> None:
        self.relay = relay
        self.client = client
        self.counts = counts

    def figures(self) -> str:
        self.relay.flush(2)
        written = self.relay.get_metrics().entries_written
        deadline = time.monotonic() + 2
        while len(self.counts.relayed) < written and time.monotonic() < deadline:
            time.sleep(0.02)  # the consumer's last reads
        got = list(self.counts.relayed)
        duplicates = len(got) - len(set(got))
        return (
            f"relay: {written} trades written to Redis Streams, the consumer read {len(got)}, "
            f"{duplicates} duplicates"
        )


@contextlib.contextmanager
def _relay(url: str, counts: _Counts) -> Iterator[_DemoRelay | None]:
    try:
        from ..relay import Relay, RelayClient
        from ..relay.redis_server import RedisServer, find_redis_server
    except ImportError:  # redis-py missing: the relay extra
        yield None
        return
    if find_redis_server() is None:
        yield None
        return
    with (
        RedisServer(appendonly=False) as redis,
        Relay(
            redis.url,
            [RELAYED],
            url=url,
            lease_ttl=2.0,
            manager_options={"base_retry_delay": 0.2, "max_retry_delay": 2.0},
        ) as relay,
        RelayClient(redis.url) as client,
    ):
        client.subscribe(RELAYED, counts.relay_client)
        yield _DemoRelay(relay, client, counts)


def _fetch_json(url: str) -> tuple[int, str, object]:
    """(HTTP status, health status, activeConnections) from our own endpoint, over real HTTP."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as exc:
        return 0, f"unreachable: {exc}", None
    document = json.loads(body)
    return status, document["status"], document["metrics"]["activeConnections"]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_demo(20.0, 25.0, 0))


Fault = tuple[float, str, Callable[[], object]]  # (fraction of the run, what, how)


def play(
    manager: WSManager,
    view: LiveView,
    book: OrderBook,
    faults: list[Fault],
    started: float,
    seconds: float,
    label: str,
) -> None:
    """Run a demo for ``seconds`` from ``started``: inject each fault at its fraction of the run
    (once the manager is connected), and once a second put the book's top (``label``) on the
    live view. Ctrl-C ends it early."""
    next_view = time.monotonic()
    try:
        while (now := time.monotonic()) < started + seconds:
            time.sleep(min(0.1, started + seconds - now))  # the faults' and view's clock
            connected = manager.get_connection_status().value == "connected"
            if faults and connected and time.monotonic() >= started + faults[0][0] * seconds:
                _, what, inject = faults.pop(0)
                inject()
                view.notes.append(f"*** fault injected: {what} ***")
                if not view.interactive:
                    print(view.notes[-1])
            if time.monotonic() < next_view:
                continue
            next_view += 1.0
            top = book.view(1)
            if top.bids and top.asks:
                line = (
                    f"{label}: {'synced' if top.synced else 'resyncing'}, "
                    f"bid {top.bids[0][0]} / ask {top.asks[0][0]}, resyncs {book.resyncs}"
                )
                view.notes = [n for n in view.notes if not n.startswith(label)]
                view.notes.insert(0, line)
            view.tick()
    except KeyboardInterrupt:
        print("\ninterrupted")
