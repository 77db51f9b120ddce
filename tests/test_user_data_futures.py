"""Futures user data: a listenKey made over REST, kept alive, renewed after listenKeyExpired."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("cryptography")

from conftest import SCALE, Recorder, wait_for
from userdata_helpers import HMAC_KEY, HMAC_SECRET, event

from wsmanager import WSManager
from wsmanager.core.state import Gap
from wsmanager.testing import FakeExchange


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(ws_api=True) as fake:
        fake.add_account(HMAC_KEY, secret=HMAC_SECRET)
        yield fake


def _rest(exchange: FakeExchange, method: str) -> int:
    return sum(1 for r in exchange.rest_requests() if r.path == f"{method} /fapi/v1/listenKey")


Started = tuple[WSManager, Recorder, list[Gap], Callable[[], None]]


@pytest.fixture
def futures(exchange: FakeExchange, make_manager: Callable[..., WSManager]) -> Started:
    return _start(exchange, make_manager, 0.3 * SCALE)


def _start(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], interval: float
) -> Started:
    manager = make_manager(endpoint="usdm", rest_url=exchange.futures_rest_url)
    gaps: list[Gap] = []
    manager.on_gap(gaps.append)
    recorder = Recorder()
    stop = manager.user_data(
        recorder,
        api_key=HMAC_KEY,
        api_secret=HMAC_SECRET,
        on_error=recorder.on_error,
        ws_api_url=exchange.private_url,
        keepalive_interval=interval,
    )
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    return manager, recorder, gaps, stop


def test_a_listen_key_is_made_kept_alive_and_deleted(
    exchange: FakeExchange, futures: Started
) -> None:
    manager, recorder, gaps, stop = futures
    assert _rest(exchange, "POST") == 1
    exchange.push_futures_event(HMAC_KEY, event(1, "ORDER_TRADE_UPDATE"))
    assert recorder.wait_messages(1)
    assert recorder.messages == [event(1, "ORDER_TRADE_UPDATE")]
    assert wait_for(lambda: _rest(exchange, "PUT") >= 2)
    metrics = manager.get_metrics()
    assert metrics.user_data_accounts == metrics.user_data_subscriptions == 1
    assert metrics.user_data_connections == 1
    stop()
    assert wait_for(lambda: _rest(exchange, "DELETE") == 1)
    assert wait_for(lambda: exchange.open_connections() == 0)
    assert gaps == [] and recorder.errors == []


def test_listen_key_expired_takes_a_new_key_at_once_with_one_gap(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    # a keep-alive far away: the event itself makes the manager take a new key
    manager, recorder, gaps, _stop = _start(exchange, make_manager, 600.0)
    first = exchange.listen_key(HMAC_KEY)
    assert exchange.expire_listen_key(HMAC_KEY) == 1
    assert wait_for(lambda: exchange.listen_key(HMAC_KEY) not in (None, first))
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    exchange.push_futures_event(HMAC_KEY, event(2, "ACCOUNT_UPDATE"))
    assert recorder.wait_messages(1)
    assert recorder.messages == [event(2, "ACCOUNT_UPDATE")]  # listenKeyExpired not delivered
    assert wait_for(lambda: len(gaps) == 1)
    assert gaps[0].stream == "userData" and gaps[0].expected <= gaps[0].received
    assert manager.get_metrics().user_data_gaps == 1


def test_a_drop_reconnects_on_the_same_key_with_one_gap(
    exchange: FakeExchange, futures: Started
) -> None:
    _manager, recorder, gaps, _stop = futures
    key = exchange.listen_key(HMAC_KEY)
    assert exchange.drop() == 1
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    exchange.push_futures_event(HMAC_KEY, event(3, "ORDER_TRADE_UPDATE"))
    assert recorder.wait_messages(1)
    assert exchange.listen_key(HMAC_KEY) == key
    assert wait_for(lambda: len(gaps) == 1)


def test_an_unknown_api_key_is_refused(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(endpoint="usdm-market", rest_url=exchange.futures_rest_url)
    recorder = Recorder()
    manager.user_data(
        recorder,
        api_key="NotAnAccount1",
        on_error=recorder.on_error,
        ws_api_url=exchange.private_url,
    )
    assert recorder.wait(lambda r: bool(r.errors))
    assert getattr(recorder.errors[0], "code", None) == -2015


def test_the_futures_presets_know_their_private_routes() -> None:
    from wsmanager.endpoints import get_endpoint

    assert get_endpoint("usdm").ws_api_url == "wss://fstream.binance.com/private/ws"
    usdm = get_endpoint("usdm-market")
    assert usdm.listen_key_path == "/fapi/v1/listenKey"
    assert usdm.ws_api_url == "wss://fstream.binance.com/private/ws"
    assert get_endpoint("coinm").listen_key_path == "/dapi/v1/listenKey"
