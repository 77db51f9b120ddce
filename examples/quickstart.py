"""Quick start: subscribe, iterate, collect and read metrics, against the bundled fake exchange.

Run: python examples/quickstart.py   (no internet needed; with a real exchange, drop FakeExchange
and use WSManager(url="wss://stream.binance.com:9443/ws/")).
"""

from __future__ import annotations

import threading

from wsmanager import WSManager
from wsmanager.testing import FakeExchange


def main() -> None:
    with FakeExchange(rate=50) as exchange, WSManager(url=exchange.url) as manager:
        # 1. A callback: runs on the stream's own thread.
        three_trades = threading.Event()
        prices: list[float] = []

        def on_trade(trade: dict[str, object]) -> None:
            prices.append(float(str(trade["p"])))
            if len(prices) >= 3:
                three_trades.set()

        unsubscribe = manager.subscribe("btcusdt@trade", on_trade)
        assert three_trades.wait(10), "no trades arrived"
        unsubscribe()
        print(f"callback saw {len(prices)} trades, first price {prices[0]:.2f}")

        # 2. A blocking iterator: messages on this thread, with a timeout.
        with manager.iterate("ethusdt@bookTicker", timeout=10) as tickers:
            for _, ticker in zip(range(3), tickers):
                print(f"book ticker: bid {ticker['b']} ask {ticker['a']}")

        # 3. collect(): a list of messages.
        klines = manager.collect("btcusdt@kline_1m", count=2, timeout=10)
        print(f"collected {len(klines)} klines, interval {klines[0]['k']['i']}")

        metrics = manager.get_metrics()
        print(f"streams created: {metrics.stream_creations}, "
              f"messages received: {metrics.messages_received}")


if __name__ == "__main__":
    main()
