"""The REST side of order books, against ``responses``: snapshots, errors, throttling, the
process-wide weight budget, the one-snapshot-per-second limit, and aggregate-trade backfill."""

from __future__ import annotations

import itertools
import threading
import time
from email.utils import formatdate
from typing import Any

import pytest
import requests
import responses
from conftest import SCALE, wait_for

from wsmanager.backoff import BackoffPolicy
from wsmanager.book import (
    BackfillError,
    RestClient,
    RestError,
    RestNotSentError,
    RestRejectedError,
    WeightBudget,
    depth_weight,
    fetch_agg_trades,
    weight_budget,
)
from wsmanager.book.rest import SnapshotFetcher

FAST_RETRY = BackoffPolicy(base_delay=0.01, max_delay=0.05)
_hosts = itertools.count()


def new_host() -> str:
    """A host of its own per test, so the process-wide budgets of tests never meet."""
    return f"http://rest-{next(_hosts)}-{time.monotonic_ns()}.test"


def depth_url(host: str) -> str:
    return host + "/api/v3/depth"


SNAPSHOT = {"lastUpdateId": 1027024, "bids": [["4.00000000", "431.00000000"]], "asks": []}


def fetcher(host: str, **options: Any) -> SnapshotFetcher:
    options.setdefault("min_interval", 0.0)
    options.setdefault("retry", FAST_RETRY)
    return SnapshotFetcher(RestClient(host), "bnbbtc", 100, **options)


# -- weights and the budget ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "weight"), [(1, 5), (100, 5), (101, 25), (500, 25), (501, 50), (1000, 50),
                          (1001, 250), (5000, 250)]
)  # fmt: skip
def test_the_depth_weight_follows_the_limit(limit: int, weight: int) -> None:
    assert depth_weight(limit) == weight


@pytest.mark.parametrize("limit", [0, 5001, -1, 1.5, True, "100"])
def test_a_bad_depth_limit_is_refused(limit: Any) -> None:
    with pytest.raises(ValueError, match=r"limit must be an int in 1\.\.5000"):
        depth_weight(limit)


def test_the_budget_waits_for_weight_to_leave_the_window() -> None:
    budget = WeightBudget(limit=10, window=0.3 * SCALE)
    started = time.monotonic()
    assert budget.reserve(6) and budget.reserve(4)
    assert budget.used() == 10 and budget.waits == 0
    assert budget.reserve(5)  # waits until the first 6 leave the window
    assert time.monotonic() - started >= 0.3 * SCALE * 0.95
    assert budget.waits == 1 and budget.used() in (5, 9)  # the 4 may have left too


def test_the_budget_gives_up_at_a_deadline_or_a_stop_without_spending() -> None:
    budget = WeightBudget(limit=10, window=60.0)
    assert budget.reserve(10)
    started = time.monotonic()
    assert not budget.reserve(1, deadline=time.monotonic() + 0.05)
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert not budget.reserve(1, stop=stop)
    assert time.monotonic() - started < 2.0 * SCALE
    assert budget.used() == 10
    with pytest.raises(ValueError, match="can never fit"):
        budget.reserve(11)


def test_the_budget_follows_the_exchange_count_and_pauses() -> None:
    budget = WeightBudget(limit=100, window=60.0)
    budget.reserve(10)
    budget.observe_used(95)  # other programs on this IP spent 85
    assert budget.used() == 95
    budget.observe_used(50)  # lower than ours: nothing to add
    assert budget.used() == 95
    assert not budget.reserve(6, deadline=time.monotonic() + 0.01)
    budget2 = WeightBudget()
    budget2.pause(0.2 * SCALE)
    assert budget2.paused_for() > 0
    started = time.monotonic()
    assert budget2.reserve(1)
    assert time.monotonic() - started >= 0.2 * SCALE * 0.95


def test_one_budget_per_host_and_port_shared_by_every_client() -> None:
    host = new_host()
    assert weight_budget(host + "/x") is weight_budget(host.upper())
    assert RestClient(host).budget is RestClient(host + "/").budget
    assert weight_budget("http://a.test:1") is not weight_budget("http://a.test:2")


def test_bad_client_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rest_url"):
        RestClient("ftp://x")
    with pytest.raises(ValueError, match="rest_url"):
        RestClient("api.binance.com")
    with pytest.raises(ValueError, match="timeout"):
        RestClient("http://x.test", timeout=0)


# -- snapshots -----------------------------------------------------------------------------------


@responses.activate
def test_a_snapshot_is_parsed_and_its_request_has_symbol_limit_and_weight() -> None:
    host = new_host()
    responses.get(depth_url(host), json=SNAPSHOT, headers={"X-MBX-USED-WEIGHT-1M": "42"})
    snap = fetcher(host).fetch(threading.Event())
    assert snap is not None and snap.last_update_id == 1027024
    assert snap.bids == [["4.00000000", "431.00000000"]] and snap.asks == []
    request = responses.calls[0].request
    assert request.params == {"symbol": "BNBBTC", "limit": "100"}
    assert weight_budget(host).used() == 42  # our 5, then the exchange's own count


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "body": "oops"},
        {"status": 503, "json": {"code": -1008, "msg": "Server is currently overloaded"}},
        {"status": 200, "body": "{not json"},
        {"status": 200, "json": {"bids": []}},  # no lastUpdateId
        {"body": requests.ConnectionError("connection refused")},
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.ConnectTimeout("connect timed out")},
    ],
)
@responses.activate
def test_transient_failures_are_retried_with_backoff(failure: dict[str, Any]) -> None:
    host = new_host()
    responses.get(depth_url(host), **failure)
    responses.get(depth_url(host), **failure)
    responses.get(depth_url(host), json=SNAPSHOT)
    fetch = fetcher(host)
    snap = fetch.fetch(threading.Event())
    assert snap is not None and snap.last_update_id == 1027024
    assert fetch.requests == 3 and fetch.failures == 2


@responses.activate
def test_errors_name_the_url_status_and_exchange_code() -> None:
    host = new_host()
    client = RestClient(host)
    responses.get(depth_url(host), status=503, json={"code": -1008, "msg": "overloaded"})
    with pytest.raises(RestError) as caught:
        client.get_json("/api/v3/depth", {"symbol": "X"}, weight=1)
    assert caught.value.status_code == 503 and caught.value.code == -1008
    assert "HTTP 503" in str(caught.value) and "overloaded" in str(caught.value)
    assert depth_url(host) in str(caught.value)
    responses.replace(responses.GET, depth_url(host), body="<html>")
    with pytest.raises(RestError, match="malformed JSON"):
        client.get_json("/api/v3/depth", {"symbol": "X"}, weight=1)
    responses.replace(responses.GET, depth_url(host), body=requests.ReadTimeout("slow"))
    with pytest.raises(RestError, match="no answer within 10s"):
        client.get_json("/api/v3/depth", {"symbol": "X"}, weight=1)


@pytest.mark.parametrize(
    ("status", "body", "headers", "match"),
    [
        (400, {"code": -1121, "msg": "Invalid symbol."}, {}, "code -1121: Invalid symbol"),
        (403, {}, {}, "HTTP 403"),
        (404, {}, {}, "HTTP 404"),
        (301, {}, {"Location": "https://api.example/api/v3/depth"}, "redirected to https"),
    ],
)
@responses.activate
def test_permanent_refusals_are_not_retried(
    status: int, body: Any, headers: dict[str, str], match: str
) -> None:
    host = new_host()
    responses.get(depth_url(host), status=status, json=body, headers=headers)
    fetch = fetcher(host)
    with pytest.raises(RestRejectedError, match=match) as caught:
        fetch.fetch(threading.Event())
    assert caught.value.status_code == status
    assert fetch.requests == 1


@pytest.mark.parametrize("status", [429, 418])
@responses.activate
def test_429_and_418_retry_after_pauses_every_client_of_the_host(status: int) -> None:
    host = new_host()
    wait = 1  # delta-seconds are whole (RFC 9110): "0.4" would be ignored
    responses.get(
        depth_url(host), status=status, json={"code": -1003, "msg": "Too many requests"},
        headers={"Retry-After": f"{wait}"},
    )  # fmt: skip
    responses.get(depth_url(host), json=SNAPSHOT)
    times: list[float] = []
    fetch = fetcher(host)
    fetch.client.session.hooks["response"].append(lambda r, **_: times.append(time.monotonic()))
    done = threading.Event()
    result: list[Any] = []
    thread = threading.Thread(target=lambda: (result.append(fetch.fetch(threading.Event())),
                                              done.set()))  # fmt: skip
    thread.start()
    # Another client of the same host, meanwhile: not sent while the pause lasts.
    assert wait_for(lambda: weight_budget(host).paused_for() > 0, interval=0.002)
    with pytest.raises(BackfillError, match="paused") as caught:
        fetch_agg_trades(host, "bnbbtc", 1, 2, timeout=0.1 * SCALE)
    assert isinstance(caught.value.__cause__, RestNotSentError)
    assert done.wait(5 * SCALE)
    thread.join()
    assert result[0] is not None and len(times) == 2
    assert times[1] - times[0] >= wait * 0.95
    assert len(responses.calls) == 2  # the backfill never reached the exchange


@responses.activate
def test_an_answer_too_large_is_an_error_not_a_memory_blowup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wsmanager.book import rest

    monkeypatch.setattr(rest, "MAX_ANSWER_BYTES", 1000)
    host = new_host()
    responses.get(depth_url(host), body="[" + "1," * 600 + "1]")
    with pytest.raises(RestError, match="an answer over 1000 bytes"):
        RestClient(host).get_json("/api/v3/depth", {}, weight=1)
    responses.replace(responses.GET, depth_url(host), body="[" + "1," * 400 + "1]")
    assert len(RestClient(host).get_json("/api/v3/depth", {}, weight=1)) == 401


@responses.activate
def test_retry_after_as_an_http_date_is_honoured() -> None:
    host = new_host()
    responses.get(depth_url(host), status=429, headers={"Retry-After": formatdate(time.time() + 1)})
    with pytest.raises(RestError) as caught:
        RestClient(host).get_json("/api/v3/depth", {}, weight=1)
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 1.0
    assert weight_budget(host).paused_for() > 0


@responses.activate
def test_at_most_one_snapshot_request_per_interval() -> None:
    host = new_host()
    responses.get(depth_url(host), json=SNAPSHOT)
    times: list[float] = []
    fetch = fetcher(host, min_interval=0.3 * SCALE)
    fetch.client.session.hooks["response"].append(lambda r, **_: times.append(time.monotonic()))
    stop = threading.Event()
    for _ in range(3):
        assert fetch.fetch(stop) is not None
    assert fetch.requests == 3
    assert min(b - a for a, b in itertools.pairwise(times)) >= 0.3 * SCALE * 0.95


@responses.activate
def test_a_stopped_fetch_returns_none_promptly_even_while_backing_off() -> None:
    host = new_host()
    responses.get(depth_url(host), status=500)
    fetch = fetcher(host, retry=BackoffPolicy(30.0, 30.0))
    stop = threading.Event()
    threading.Timer(0.1, stop.set).start()
    started = time.monotonic()
    assert fetch.fetch(stop) is None
    assert time.monotonic() - started < 2 * SCALE


@responses.activate
def test_the_weight_budget_throttles_snapshot_requests() -> None:
    host = new_host()
    responses.get(depth_url(host), json=SNAPSHOT)
    budget = WeightBudget(limit=10, window=0.4 * SCALE)  # two weight-5 requests per window
    fetch = SnapshotFetcher(RestClient(host, budget=budget), "bnbbtc", 100, min_interval=0)
    started = time.monotonic()
    for _ in range(3):
        assert fetch.fetch(threading.Event()) is not None
    assert time.monotonic() - started >= 0.4 * SCALE * 0.95
    assert budget.waits == 1


# -- backfill ------------------------------------------------------------------------------------


def agg_trade(trade_id: int) -> dict[str, Any]:
    return {"a": trade_id, "p": f"{100 + trade_id % 7}.50", "q": "0.25000000",
            "f": 2 * trade_id, "l": 2 * trade_id + 1, "T": 1_700_000_000_000 + trade_id,
            "m": trade_id % 2 == 0, "M": True}  # fmt: skip


def serve_agg_trades(host: str, available: range, *, fail: set[int] | None = None) -> None:
    """An exchange holding aggregate trades ``available``; requests numbered in ``fail`` 500."""
    calls = itertools.count()

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        import json

        if fail and next(calls) in fail:
            return 500, {}, "{}"
        start = int(request.params["fromId"])
        limit = int(request.params.get("limit", 500))
        assert limit <= 1000
        ids = [i for i in range(start, start + limit) if i in available]
        return 200, {}, json.dumps([agg_trade(i) for i in ids])

    responses.add_callback(responses.GET, host + "/api/v3/aggTrades", callback=answer)


@responses.activate
def test_backfill_pages_through_the_range_in_order_shaped_like_the_stream() -> None:
    host = new_host()
    serve_agg_trades(host, range(0, 10_000))
    trades = fetch_agg_trades(host, "btcusdt", 100, 2599)
    assert [t["a"] for t in trades] == list(range(100, 2600))
    assert [c.request.params["fromId"] for c in responses.calls] == ["100", "1100", "2100"]
    assert [c.request.params["limit"] for c in responses.calls] == ["1000", "1000", "500"]
    assert responses.calls[0].request.params["symbol"] == "BTCUSDT"
    first = trades[0]
    assert list(first) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    assert first == {"e": "aggTrade", "E": 1_700_000_000_100, "s": "BTCUSDT", "a": 100,
                     "p": "102.50", "q": "0.25000000", "f": 200, "l": 201,
                     "T": 1_700_000_000_100, "m": True, "M": True}  # fmt: skip
    assert weight_budget(host).used() == 3 * 4


@responses.activate
def test_backfill_of_one_trade_and_transient_errors_retried() -> None:
    host = new_host()
    serve_agg_trades(host, range(0, 100), fail={0, 1})
    trades = fetch_agg_trades(host, "btcusdt", 7, 7, retry=FAST_RETRY)
    assert [t["a"] for t in trades] == [7] and len(responses.calls) == 3


@responses.activate
def test_backfill_fails_clearly_when_rest_is_down_keeping_what_it_got() -> None:
    host = new_host()
    serve_agg_trades(host, range(0, 10_000), fail=set(range(1, 1000)))
    started = time.monotonic()
    with pytest.raises(BackfillError, match=r"gave up within the 0\.3s timeout") as caught:
        fetch_agg_trades(host, "btcusdt", 0, 1999, timeout=0.3, retry=FAST_RETRY)
    assert time.monotonic() - started < 0.3 + 1.0 * SCALE
    error = caught.value
    assert (error.symbol, error.from_id, error.to_id) == ("BTCUSDT", 0, 1999)
    assert [t["a"] for t in error.trades] == list(range(0, 1000))
    assert isinstance(error.__cause__, RestError) and error.__cause__.status_code == 500


@pytest.mark.parametrize(
    ("available", "match"),
    [
        (range(0, 50), "has no aggregate trade from id 50"),
        (set(range(0, 40)) | set(range(41, 100)), "answered id 41 where 40 was expected"),
    ],
)
@responses.activate
def test_backfill_fails_when_the_exchange_cannot_cover_the_range(
    available: Any, match: str
) -> None:
    host = new_host()
    serve_agg_trades(host, available)  # type: ignore[arg-type]
    with pytest.raises(BackfillError, match=match):
        fetch_agg_trades(host, "btcusdt", 10, 60)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"code": -1121, "msg": "Invalid symbol."}, "Invalid symbol"),
        ([{"a": 5}], "malformed aggregate trade"),
        ([dict(agg_trade(5), a="5")], "ids and time must be ints"),
        ({"not": "a list"}, "not a list"),
    ],
)
@responses.activate
def test_backfill_refusals_and_malformed_answers_are_errors(body: Any, match: str) -> None:
    host = new_host()
    status = 400 if "code" in body else 200
    responses.get(host + "/api/v3/aggTrades", status=status, json=body)
    with pytest.raises(BackfillError, match=match):
        fetch_agg_trades(host, "btcusdt", 5, 6)
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("from_id", "to_id", "match"),
    [(-1, 5, "from_id"), (5, 4, "to_id"), (1.0, 5, "from_id"), (1, True, "to_id")],
)
def test_backfill_checks_its_range(from_id: Any, to_id: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fetch_agg_trades("http://x.test", "btcusdt", from_id, to_id)


@responses.activate
def test_backfill_uses_the_given_session() -> None:
    host = new_host()
    serve_agg_trades(host, range(0, 10))
    session = requests.Session()
    seen: list[str] = []
    session.hooks["response"].append(lambda r, **_: seen.append(r.url))
    assert len(fetch_agg_trades(host, "btcusdt", 1, 3, session=session)) == 3
    assert len(seen) == 1
    session.close()
