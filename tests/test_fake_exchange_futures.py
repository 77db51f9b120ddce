"""The fake exchange's futures markets and newer spot surface, driven by plain clients
(python-websockets' sync client, ``requests``), never by wsmanager's manager: USD-M routes,
futures payloads, the pu-chained depth feed and its true book, futures REST, timeUnit, Unicode
symbols, referencePrice, blockTrade and id restarts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
import requests
from test_fake_exchange import nothing_arrives, recv_json, request, ws_client

from wsmanager.testing import FakeExchange


@pytest.fixture
def usdm() -> Iterator[FakeExchange]:
    with FakeExchange(market="usdm", seed=7) as fake:
        yield fake


def get(exchange: FakeExchange, path: str, **params: Any) -> requests.Response:
    return requests.get(exchange.rest_url + path, params=params, timeout=5)


def test_the_routes_carry_their_own_streams_and_the_others_stay_silent(
    usdm: FakeExchange,
) -> None:
    public = usdm.root_url + "/public/stream?streams=btcusdt@depth/btcusdt@aggTrade"
    with ws_client(public) as ws:
        assert usdm.wait_for_open("btcusdt@depth")
        usdm.publish("btcusdt@aggTrade")  # the /market route's: withheld here
        assert nothing_arrives(ws)
        usdm.publish("btcusdt@depth")
        message = recv_json(ws)
        assert message["stream"] == "btcusdt@depth" and message["data"]["e"] == "depthUpdate"
        [(_, stream)] = usdm.withheld()
        assert stream == "btcusdt@aggTrade"
    with ws_client(usdm.route_url("market") + "btcusdt@markPrice") as ws:
        assert usdm.wait_for_open("btcusdt@markPrice")
        usdm.publish("btcusdt@markPrice")
        assert recv_json(ws)["e"] == "markPriceUpdate"


@pytest.mark.parametrize("path", ["/ws", "/stream", "/market/ws"])
def test_the_root_and_the_wrong_route_accept_subscribe_and_send_nothing(
    usdm: FakeExchange, path: str
) -> None:
    with ws_client(usdm.root_url + path) as ws:
        assert request(ws, "SUBSCRIBE", ["btcusdt@depth"]) == {"result": None, "id": 1}
        usdm.publish("btcusdt@depth")
        assert nothing_arrives(ws)
        assert usdm.stats("btcusdt@depth").open == 1
        assert [s for _, s in usdm.withheld()] == ["btcusdt@depth"]


def test_futures_depth_chains_by_pu_with_u_jumping_and_rebuilds_the_true_book(
    usdm: FakeExchange,
) -> None:
    snapshot = get(usdm, "/fapi/v1/depth", symbol="BTCUSDT", limit=1000).json()
    assert {"lastUpdateId", "E", "T", "bids", "asks"} <= set(snapshot)
    bids = {Decimal(p): Decimal(q) for p, q in snapshot["bids"]}
    asks = {Decimal(p): Decimal(q) for p, q in snapshot["asks"]}
    with ws_client(usdm.route_url("public") + "btcusdt@depth@100ms") as ws:
        assert usdm.wait_for_open("btcusdt@depth@100ms")
        last = None
        jumps = 0
        for _ in range(200):
            usdm.publish("btcusdt@depth@100ms")
            event = recv_json(ws)
            assert set(event) == {"e", "E", "T", "s", "U", "u", "pu", "b", "a"}
            if last is not None:
                assert event["pu"] == last
                jumps += event["U"] > last + 1
            last = event["u"]
            if event["u"] < snapshot["lastUpdateId"]:
                continue
            for side, book in (("b", bids), ("a", asks)):
                for price, qty in event[side]:
                    if Decimal(qty) == 0:
                        book.pop(Decimal(price), None)
                    else:
                        book[Decimal(price)] = Decimal(qty)
        assert jumps > 20  # U is not the last u + 1, as on the real exchange
        true = usdm.book("BTCUSDT")
        assert sorted(bids.items(), reverse=True) == true.bids()
        assert sorted(asks.items()) == true.asks()
        usdm.skip("btcusdt@depth@100ms", 3)  # the chain breaks: an event is never sent
        usdm.publish("btcusdt@depth@100ms")
        event = recv_json(ws)
        assert event["pu"] > last


def test_futures_payload_shapes(usdm: FakeExchange) -> None:
    streams = ["btcusdt@aggTrade", "btcusdt@markPrice", "btcusdt@kline_1m"]
    url = usdm.root_url + "/market/stream?streams=" + "/".join(streams)
    with ws_client(url) as ws:
        assert usdm.wait_for_open(streams[0])
        for stream in streams:
            usdm.publish(stream)
        got = {m["stream"]: m["data"] for m in (recv_json(ws) for _ in streams)}
    assert got["btcusdt@aggTrade"]["e"] == "aggTrade" and "M" not in got["btcusdt@aggTrade"]
    assert got["btcusdt@markPrice"]["e"] == "markPriceUpdate" and "r" in got["btcusdt@markPrice"]
    assert got["btcusdt@kline_1m"]["k"]["i"] == "1m"
    with ws_client(usdm.route_url("public") + "btcusdt@bookTicker") as ws:
        assert usdm.wait_for_open("btcusdt@bookTicker")
        usdm.publish("btcusdt@bookTicker")
        ticker = recv_json(ws)
    assert {"e", "u", "E", "T", "s", "b", "B", "a", "A"} == set(ticker)


def test_futures_rest_paths_and_no_spot_paths(usdm: FakeExchange) -> None:
    for _ in range(5):
        usdm.publish("btcusdt@aggTrade")
    trades = get(usdm, "/fapi/v1/aggTrades", symbol="BTCUSDT", fromId=2, limit=3).json()
    assert [t["a"] for t in trades] == [2, 3, 4]
    assert get(usdm, "/api/v3/depth", symbol="BTCUSDT").status_code == 404
    assert get(usdm, "/dapi/v1/depth", symbol="BTCUSDT").status_code == 404
    with FakeExchange(market="coinm") as coinm:
        answer = get(coinm, "/dapi/v1/depth", symbol="BTCUSD_PERP", limit=5).json()
        assert len(answer["bids"]) == 5 and "T" in answer
        assert get(coinm, "/fapi/v1/depth", symbol="BTCUSD_PERP").status_code == 404
    with pytest.raises(ValueError, match="market must be one of spot, usdm, coinm"):
        FakeExchange(market="options")


def test_time_unit_microsecond_on_raw_and_combined_urls(exchange: FakeExchange) -> None:
    with (
        ws_client(exchange.url + "btcusdt@trade?timeUnit=MICROSECOND") as raw,
        ws_client(exchange.combined_url("btcusdt@trade") + "&timeUnit=microsecond") as combined,
        ws_client(exchange.url + "btcusdt@trade") as plain,
    ):
        assert exchange.wait_for_open("btcusdt@trade", 3)
        exchange.publish("btcusdt@trade")
        micro, enveloped, milli = recv_json(raw), recv_json(combined)["data"], recv_json(plain)
    assert micro["E"] == milli["E"] * 1000 and micro["T"] == milli["T"] * 1000
    assert enveloped == micro and micro["t"] == milli["t"]  # ids are not times
    with pytest.raises(Exception, match="400"):
        ws_client(exchange.url + "btcusdt@trade?timeUnit=SECOND")


def test_unicode_symbols_reference_price_and_block_trade(exchange: FakeExchange) -> None:
    stream = "币安人生usdt@trade"
    with ws_client(exchange.combined_url(quote(stream), "bnbbtc@referencePrice")) as ws:
        assert exchange.wait_for_open(stream)
        assert request(ws, "SUBSCRIBE", ["bnbbtc@blockTrade"]) == {"result": None, "id": 1}
        exchange.publish(stream)
        message = recv_json(ws)
        assert message["stream"] == stream and message["data"]["s"] == "币安人生USDT"
        prices = []
        for _ in range(5):
            exchange.publish("bnbbtc@referencePrice")
            data = recv_json(ws)["data"]
            assert set(data) == {"e", "s", "r", "t"}  # no E
            prices.append(data["r"])
        assert None in prices
        exchange.publish("bnbbtc@blockTrade")
        block = recv_json(ws)["data"]
        assert block["e"] == "blockTrade" and block["t"] == 1
    with ws_client(exchange.url + quote("币安人生usdt@aggTrade")) as ws:
        assert exchange.wait_for_open("币安人生usdt@aggTrade")
        exchange.publish("币安人生usdt@aggTrade")
        assert json.loads(ws.recv(timeout=2))["a"] == 1


def test_restart_ids(exchange: FakeExchange) -> None:
    exchange.restart_ids("btcusdt@trade", 5_000_000)
    with ws_client(exchange.url + "btcusdt@trade") as ws:
        assert exchange.wait_for_open("btcusdt@trade")
        exchange.publish("btcusdt@trade")
        assert recv_json(ws)["t"] == 5_000_000
        exchange.restart_ids("btcusdt@trade")
        exchange.publish("btcusdt@trade")
        assert recv_json(ws)["t"] == 1
    with pytest.raises(ValueError, match="start must be an int >= 1"):
        exchange.restart_ids("btcusdt@trade", 0)
