"""The fake exchange's true order book, its depth streams and its REST API, with plain clients
(python-websockets' sync client and ``requests``)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import requests
from conftest import SCALE
from test_fake_exchange import AGG, DEPTH, recv_json, ws_client

from wsmanager.testing import ExchangeRules, FakeExchange, TrueBook


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(seed=11) as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # never a proxy for loopback
        yield session


def get(http: requests.Session, exchange: FakeExchange, path: str, **params: Any) -> Any:
    return http.get(exchange.rest_url + path, params=params, timeout=5 * SCALE)


Book = dict[str, dict[Decimal, Decimal]]


def from_snapshot(snapshot: dict[str, Any]) -> Book:
    return {side: {Decimal(p): Decimal(q) for p, q in snapshot[side]} for side in ("bids", "asks")}


def apply(book: Book, event: dict[str, Any]) -> None:
    for side, key in (("bids", "b"), ("asks", "a")):
        for price, qty in event[key]:
            if Decimal(qty) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = Decimal(qty)


def as_levels(book: Book) -> tuple[list[Any], list[Any]]:
    return (
        sorted(book["bids"].items(), reverse=True),
        sorted(book["asks"].items()),
    )


def true_levels(true: TrueBook) -> tuple[list[Any], list[Any]]:
    return true.bids(), true.asks()


# -- the true book --------------------------------------------------------------------------------


def test_the_true_book_is_deterministic_sorted_and_uncrossed() -> None:
    with FakeExchange(seed=5, book_levels=20) as one, FakeExchange(seed=5, book_levels=20) as two:
        first, second = one.book("BTCUSDT"), two.book("btcusdt")
        assert first == second and first.symbol == "BTCUSDT"
        assert len(first.bids()) == len(first.asks()) == 20
        prices = [p for p, _ in first.bids()]
        assert prices == sorted(prices, reverse=True)
        assert [p for p, _ in first.asks()] == sorted(p for p, _ in first.asks())
        best_bid, best_ask = first.best_bid(), first.best_ask()
        assert best_bid is not None and best_ask is not None and best_bid[0] < best_ask[0]
        assert all(isinstance(q, Decimal) and q > 0 for _, q in first.bids())
        assert first.bids(3) == first.bids()[:3]


def test_depth_diffs_applied_to_a_snapshot_give_the_true_book(
    exchange: FakeExchange, http: requests.Session
) -> None:
    with ws_client(exchange.stream_url(DEPTH)) as ws:
        for _ in range(20):
            exchange.publish(DEPTH)
        snapshot = get(http, exchange, "/api/v3/depth", symbol="BTCUSDT", limit=5000).json()
        for _ in range(300):
            exchange.publish(DEPTH)
        events = [recv_json(ws) for _ in range(320)]
    book = from_snapshot(snapshot)
    last = snapshot["lastUpdateId"]
    applied = [e for e in events if e["u"] > last]
    assert applied[0]["U"] <= last + 1 <= applied[0]["u"]  # Binance's procedure holds
    removals = 0
    for event in applied:
        assert event["U"] == last + 1
        apply(book, event)
        last = event["u"]
        removals += sum(Decimal(q) == 0 for _, q in event["b"] + event["a"])
    true = exchange.book("BTCUSDT")
    assert true.last_update_id == last == exchange.sequence(DEPTH)
    assert as_levels(book) == true_levels(true)
    assert removals > 0  # levels do go away, with quantity "0.00000000"
    assert any(q == "0.00000000" for e in events for _, q in e["b"] + e["a"])


def test_both_depth_speeds_are_diffs_of_the_same_book(exchange: FakeExchange) -> None:
    slow = "btcusdt@depth"
    with ws_client(exchange.combined_url(DEPTH, slow)) as ws:
        exchange.publish(DEPTH)
        exchange.publish(slow)  # starts after the first change
        start = exchange.book("BTCUSDT")
        for i in range(30):
            exchange.publish(DEPTH if i % 3 else slow)
        messages = [recv_json(ws) for _ in range(32)]
    book = {"bids": dict(start.bids()), "asks": dict(start.asks())}
    events = [m["data"] for m in messages[2:] if m["stream"] == slow]
    last = start.last_update_id
    for event in events:
        assert event["U"] == last + 1
        apply(book, event)
        last = event["u"]
    assert as_levels(book) == true_levels(exchange.book("BTCUSDT", update_id=last))


def test_partial_depth_is_the_top_of_the_true_book(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url("btcusdt@depth5@100ms")) as ws:
        exchange.publish("btcusdt@depth5@100ms")
        message = recv_json(ws)
    true = exchange.book("BTCUSDT")
    assert message["lastUpdateId"] == true.last_update_id
    assert [(Decimal(p), Decimal(q)) for p, q in message["bids"]] == true.bids(5)
    assert [(Decimal(p), Decimal(q)) for p, q in message["asks"]] == true.asks(5)


# -- REST ----------------------------------------------------------------------------------------


def test_depth_snapshot_matches_the_true_book_at_its_update_id(
    exchange: FakeExchange, http: requests.Session
) -> None:
    for _ in range(10):
        exchange.publish(DEPTH)
    response = get(http, exchange, "/api/v3/depth", symbol="BTCUSDT", limit=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"lastUpdateId", "bids", "asks"}
    true = exchange.book("BTCUSDT", update_id=body["lastUpdateId"])
    assert true.last_update_id == body["lastUpdateId"] == exchange.sequence(DEPTH)
    assert [(Decimal(p), Decimal(q)) for p, q in body["bids"]] == true.bids(10)
    assert [(Decimal(p), Decimal(q)) for p, q in body["asks"]] == true.asks(10)
    assert all(len(p.split(".")[1]) == 8 for p, _ in body["bids"])  # Binance's strings


def test_depth_weights_limits_and_errors(exchange: FakeExchange, http: requests.Session) -> None:
    cases = [({}, 5, 50), ({"limit": 7}, 10, 7), ({"limit": 500}, 35, 50)]
    cases += [({"limit": 1000}, 85, 50), ({"limit": 6000}, 335, 50)]
    for params, used, levels in cases:
        response = get(http, exchange, "/api/v3/depth", symbol="ETHUSDT", **params)
        assert response.status_code == 200, params
        assert response.headers["X-MBX-USED-WEIGHT-1M"] == str(used), params
        assert len(response.json()["bids"]) == levels
    for params, code in [
        ({}, -1102),
        ({"symbol": "btcusdt"}, -1121),
        ({"symbol": "BTCUSDT", "limit": "ten"}, -1100),
        ({"symbol": "BTCUSDT", "limit": 0}, -1130),
    ]:
        response = get(http, exchange, "/api/v3/depth", **params)
        assert response.status_code == 400, params
        assert response.json()["code"] == code and response.json()["msg"]
    assert get(http, exchange, "/api/v3/nothing").status_code == 404
    assert get(http, exchange, "/api/v3/ping").json() == {}
    assert abs(get(http, exchange, "/api/v3/time").json()["serverTime"] - time.time() * 1e3) < 5e3
    assert exchange.total_attempts() == 0  # REST requests are not WebSocket attempts


def test_agg_trades_from_the_history_including_a_skipped_range(
    exchange: FakeExchange, http: requests.Session
) -> None:
    with ws_client(exchange.stream_url(AGG)) as ws:
        for _ in range(10):
            exchange.publish(AGG)
        exchange.skip(AGG, 5)
        exchange.publish(AGG)
        received = [recv_json(ws) for _ in range(11)]
    assert received[-1]["a"] == received[-2]["a"] + 6
    response = get(http, exchange, "/api/v3/aggTrades", symbol="BTCUSDT", fromId=11, limit=5)
    assert response.headers["X-MBX-USED-WEIGHT-1M"] == "4"
    missing = response.json()
    assert [t["a"] for t in missing] == [11, 12, 13, 14, 15]
    assert set(missing[0]) == {"a", "p", "q", "f", "l", "T", "m", "M"}
    ids = [received[-2], *missing, received[-1]]
    for before, after in itertools.pairwise(ids):
        assert after["f"] == before["l"] + 1
    for sent in received:
        stored = get(http, exchange, "/api/v3/aggTrades", symbol="BTCUSDT", fromId=sent["a"])
        assert stored.json()[0] == {k: sent[k] for k in ("a", "p", "q", "f", "l", "T", "m", "M")}
    latest = get(http, exchange, "/api/v3/aggTrades", symbol="BTCUSDT", limit=2).json()
    assert [t["a"] for t in latest] == [15, 16]
    everything = get(http, exchange, "/api/v3/aggTrades", symbol="BTCUSDT", fromId=0).json()
    assert len(everything) == 16  # default limit 500
    too_many = get(http, exchange, "/api/v3/aggTrades", symbol="BTCUSDT", limit=1001)
    assert too_many.status_code == 400 and too_many.json()["code"] == -1130


# -- REST faults ---------------------------------------------------------------------------------


def test_rest_errors_then_normal(exchange: FakeExchange, http: requests.Session) -> None:
    exchange.rest_errors(status=503, count=2)
    statuses = [get(http, exchange, "/api/v3/ping").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    exchange.rest_errors(status=500, count=None)
    assert get(http, exchange, "/api/v3/ping").json()["code"] == -1000
    exchange.rest_normal()
    assert get(http, exchange, "/api/v3/ping").status_code == 200
    log = exchange.rest_requests()
    assert [r.status for r in log] == [503, 503, 200, 500, 200]
    assert log[2].path == "/api/v3/ping" and log[2].weight == 1


@pytest.mark.parametrize("status", [429, 418])
def test_rest_throttle_with_retry_after(
    exchange: FakeExchange, http: requests.Session, status: int
) -> None:
    exchange.rest_throttle(status=status, retry_after=7, count=1)
    response = get(http, exchange, "/api/v3/depth", symbol="BTCUSDT")
    assert response.status_code == status and response.headers["Retry-After"] == "7"
    assert response.json()["code"] == -1003
    assert get(http, exchange, "/api/v3/depth", symbol="BTCUSDT").status_code == 200


def test_rest_delay(exchange: FakeExchange, http: requests.Session) -> None:
    exchange.rest_delay(0.3 * SCALE)
    started = time.monotonic()
    assert get(http, exchange, "/api/v3/ping").status_code == 200
    assert time.monotonic() - started >= 0.3 * SCALE


def test_snapshot_lag_serves_the_book_as_it_was(
    exchange: FakeExchange, http: requests.Session
) -> None:
    start = exchange.book("BTCUSDT")
    seen = {start.last_update_id: start}  # update id -> the true book then, as it happened
    for _ in range(200):
        exchange.publish(DEPTH)
        true = exchange.book("BTCUSDT")
        seen[true.last_update_id] = true
    now = exchange.sequence(DEPTH)
    for lag in (1, 7, 60, 300, now - start.last_update_id):
        exchange.snapshot_lag(updates=lag)
        body = get(http, exchange, "/api/v3/depth", symbol="BTCUSDT", limit=1000).json()
        assert now - lag - 3 <= body["lastUpdateId"] <= now - lag  # the last change by then
        then = seen[body["lastUpdateId"]]
        assert [(Decimal(p), Decimal(q)) for p, q in body["bids"]] == then.bids()
        assert [(Decimal(p), Decimal(q)) for p, q in body["asks"]] == then.asks()
        assert exchange.book("BTCUSDT", update_id=body["lastUpdateId"]) == then
    exchange.rest_normal()
    assert get(http, exchange, "/api/v3/depth", symbol="BTCUSDT").json()["lastUpdateId"] == now


def test_rest_weight_rule_429_then_418() -> None:
    rules = ExchangeRules(rest_weight_per_minute=60)
    with FakeExchange(rules=rules) as exchange, requests.Session() as http:
        http.trust_env = False
        depth = exchange.rest_url + "/api/v3/depth"
        for _ in range(2):
            assert http.get(depth, params={"symbol": "A", "limit": 500}).status_code == 200
        refused = http.get(depth, params={"symbol": "A", "limit": 500})
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        banned = http.get(exchange.rest_url + "/api/v3/ping")
        assert banned.status_code == 418 and banned.headers["Retry-After"] == "120"
        assert [v.kind for v in exchange.violations()] == ["rest_weight", "banned"]


def test_bad_rest_fault_arguments_are_named(exchange: FakeExchange) -> None:
    with pytest.raises(ValueError, match="status"):
        exchange.rest_throttle(status=500)
    with pytest.raises(ValueError, match="status"):
        exchange.rest_errors(status=99)
    with pytest.raises(ValueError, match="count"):
        exchange.rest_errors(count=0)
    with pytest.raises(ValueError, match="updates"):
        exchange.snapshot_lag(updates=-1)
