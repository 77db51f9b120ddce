"""SBE streams through the relay (real redis-server): one Redis entry per trade dict, numbered by
the trade id, and a relay client gets the dicts the manager decoded, unchanged."""

from __future__ import annotations

import json
from collections.abc import Callable

from conftest import FAST, SCALE
from relay_helpers import Seqs, entries

from wsmanager.relay import Relay, RelayClient
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange

pytest_plugins = ("relay_fixtures",)  # fixtures: redis_server, make_relay, make_client

KEY = "relay-sbe-key"
TRADE, BBA = "btcusdt@trade", "btcusdt@bestBidAsk"


def test_sbe_trades_and_best_bid_ask_go_through_redis_unchanged(
    make_relay: Callable[..., Relay],
    make_client: Callable[..., RelayClient],
    redis_server: RedisServer,
) -> None:
    with FakeExchange(encoding="sbe", seed=3) as sbe:
        options = {**FAST, "encoding": "sbe", "api_key": KEY}
        relay = make_relay(TRADE, BBA, url=sbe.url, manager_options=options)
        assert relay.wait_for_role("active", 5 * SCALE)
        assert sbe.wait_for_open(TRADE) and sbe.wait_for_open(BBA)
        client = make_client(start="0")
        trades, tickers = Seqs(field=""), Seqs(field="")
        client.subscribe(TRADE, trades)
        client.subscribe(BBA, tickers)
        for _ in range(10):
            sbe.publish(TRADE)
            sbe.publish(BBA)
        last = sbe.sequence(TRADE)
        assert trades.wait_count(last) and tickers.wait_count(10)
        assert [t["t"] for t in trades.snapshot()] == list(range(1, last + 1))
        assert [t["u"] for t in tickers.snapshot()][-1] == sbe.sequence(BBA)
        stored = entries(redis_server.url, "wsmanager:" + TRADE)
        assert [entry_id for entry_id, _ in stored] == [
            f"{t}-0".encode() for t in range(1, last + 1)
        ]
        assert [json.loads(f[b"data"]) for _, f in stored] == trades.snapshot()
        ticker_ids = [entry_id for entry_id, _ in entries(redis_server.url, "wsmanager:" + BBA)]
        assert ticker_ids == [f"{t['u']}-0".encode() for t in tickers.snapshot()]
        assert relay.get_metrics().messages_received == last + 10
