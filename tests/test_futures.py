"""USD-M futures through the manager against the fake exchange in its USD-M mode: the routed
``usdm`` preset (each stream to its route, connections never mixing routes), refused streams,
pu-chained depth without false gaps, a broken chain reported once, and the decommissioned root."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import pytest
from conftest import FAST, Recorder, wait_for

from wsmanager import Gap, InvalidStreamNameError, WSManager
from wsmanager.endpoints import usdm_route
from wsmanager.testing import FakeExchange

SYMBOLS = ("btcusdt", "ethusdt")
KINDS = ("depth@100ms", "bookTicker", "aggTrade", "markPrice", "kline_1m")
ROUTED = {k: v for k, v in FAST.items() if k != "streams_per_connection"}


@pytest.fixture
def usdm() -> Iterator[FakeExchange]:
    with FakeExchange(market="usdm", seed=3) as fake:
        yield fake


def routed_manager(usdm: FakeExchange, **options: Any) -> WSManager:
    return WSManager(url=usdm.root_url, endpoint="usdm", **{**ROUTED, **options})


def publish_until(exchange: FakeExchange, recorder: Recorder, stream: str, count: int) -> bool:
    """Publish ``stream`` until ``recorder`` has ``count`` messages (bounded)."""
    for _ in range(count * 50):
        if len(recorder.messages) >= count:
            return True
        exchange.publish(stream)
        recorder.wait_messages(len(recorder.messages) + 1, 0.02)
    return len(recorder.messages) >= count


@pytest.mark.parametrize("per_connection", [200, 1])
def test_a_routed_manager_sends_each_stream_to_its_route_and_never_mixes(
    usdm: FakeExchange, per_connection: int
) -> None:
    streams = [f"{symbol}@{kind}" for symbol in SYMBOLS for kind in KINDS]
    with routed_manager(usdm, streams_per_connection=per_connection) as manager:
        recorders = {stream: Recorder() for stream in streams}
        for stream, recorder in recorders.items():
            manager.subscribe(stream, recorder)
        expected_connections = 2 if per_connection > 1 else len(streams)
        assert usdm.wait_until(lambda: usdm.open_connections() == expected_connections)
        for stream, recorder in recorders.items():
            assert publish_until(usdm, recorder, stream, 2), stream
        assert usdm.withheld() == []  # nothing subscribed on a route that does not serve it
        for connection in usdm.connections():
            route = connection.path.split("/")[1]
            assert route in ("public", "market"), connection.path
            assert {usdm_route(s) for s in connection.streams} == {route}, connection
        infos = {info.name: info for info in manager.get_stream_info()}
        assert "/public/" in infos["btcusdt@depth@100ms"].url
        assert "/market/" in infos["ethusdt@markPrice"].url
        assert manager.get_metrics().gaps == 0


def test_a_stream_of_unknown_route_is_refused_naming_the_routes(usdm: FakeExchange) -> None:
    with routed_manager(usdm) as manager:
        with pytest.raises(InvalidStreamNameError, match=r"/public.*/market") as info:
            manager.subscribe("btcusdt@somethingNew", print)
        assert info.value.stream == "btcusdt@somethingNew"
        assert manager.get_active_streams_count() == 0
    with WSManager(url=usdm.route_url("public"), endpoint="usdm-public", **ROUTED) as manager:
        with pytest.raises(InvalidStreamNameError, match="/market route"):
            manager.subscribe("btcusdt@aggTrade", print)
        manager.subscribe("btcusdt@bookTicker", print)  # its own route's: fine
    market = WSManager(url=usdm.route_url("market"), endpoint="usdm-market", **ROUTED)
    with market, pytest.raises(InvalidStreamNameError, match="/public route"):
        market.subscribe("btcusdt@depth", print)


def test_500_pu_chained_depth_events_with_u_jumps_make_no_gap(usdm: FakeExchange) -> None:
    gaps: list[Gap] = []
    stream = "btcusdt@depth@100ms"
    with routed_manager(usdm) as manager:
        manager.on_gap(gaps.append)
        recorder = Recorder()
        manager.subscribe(stream, recorder)
        assert usdm.wait_for_open(stream)
        for _ in range(500):
            usdm.publish(stream)
        assert recorder.wait_messages(500)
        events = recorder.messages
        jumps = sum(b["U"] > a["u"] + 1 for a, b in pairwise(events))
        assert jumps > 100  # U really jumps: the spot rule would see a gap at each
        assert all(b["pu"] == a["u"] for a, b in pairwise(events))
        assert gaps == [] and manager.get_metrics().gaps == 0
        assert manager.get_metrics().duplicates_dropped == 0


def test_a_break_in_the_chain_is_exactly_one_gap_with_the_contract_numbers(
    usdm: FakeExchange,
) -> None:
    gaps: list[Gap] = []
    stream = "ethusdt@depth"
    with routed_manager(usdm) as manager:
        manager.on_gap(gaps.append)
        recorder = Recorder()
        manager.subscribe(stream, recorder)
        assert usdm.wait_for_open(stream)
        for _ in range(20):
            usdm.publish(stream)
        assert recorder.wait_messages(20)
        last_u = recorder.messages[-1]["u"]
        usdm.skip(stream, 5)  # an event made and never sent
        for _ in range(20):
            usdm.publish(stream)
        assert recorder.wait_messages(40)
        usdm.repeat(stream)  # a duplicate: dropped, not a gap
        usdm.publish(stream)
        assert recorder.wait_messages(41)
        assert wait_for(lambda: len(gaps) == 1)
        after = recorder.messages[20]
        assert gaps == [Gap(stream, last_u, after["pu"], False)]
        assert after["pu"] > last_u and not gaps[0].reset
        assert manager.get_metrics().duplicates_dropped == 1


def test_url_next_to_the_routed_preset_is_the_root(usdm: FakeExchange) -> None:
    # The fake's .../ws/ base works as well: its /ws is taken off to find the root.
    with WSManager(url=usdm.url, endpoint="usdm", **ROUTED) as manager:
        recorder = Recorder()
        manager.subscribe("btcusdt@markPrice", recorder)
        assert publish_until(usdm, recorder, "btcusdt@markPrice", 1)
        [connection] = usdm.connections()
        assert connection.path.startswith("/market/stream?streams=btcusdt@markPrice")


def test_a_decommissioned_root_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsmanager"):
        WSManager(url="wss://fstream.binance.com/ws/").destroy()
    assert 'endpoint="usdm"' in caplog.text and "decommissioned" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wsmanager"):
        WSManager(endpoint="usdm-market").destroy()
        WSManager(endpoint="usdm").destroy()
        WSManager(url="wss://fstream.binance.com/ws", endpoint="usdm").destroy()  # routed
    assert "decommissioned" not in caplog.text


def test_on_the_root_nothing_arrives_which_is_why_the_routes_exist(usdm: FakeExchange) -> None:
    """The failure the routed preset prevents: a plain manager on the fake's root subscribes
    fine, and then receives nothing."""
    with WSManager(url=usdm.url, **ROUTED) as manager:
        recorder = Recorder()
        manager.subscribe("btcusdt@aggTrade", recorder)
        assert usdm.wait_for_open("btcusdt@aggTrade")
        for _ in range(5):
            usdm.publish("btcusdt@aggTrade")
        assert not recorder.wait_messages(1, 0.3)
        assert usdm.withheld() == [(usdm.connections()[0].id, "btcusdt@aggTrade")]
