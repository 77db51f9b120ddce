"""The newer spot surface through the manager, against the fake exchange: query parameters
(``timeUnit``) kept on raw and combined URLs, Unicode stream names end to end, payloads without
``E`` (``@referencePrice``) and ``@blockTrade``, and sequence resets (ids restarted by the
exchange) as against small repeats after a reconnect."""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import quote

import pytest
from conftest import Recorder, flows, wait_for

from wsmanager import Gap, InvalidStreamNameError, WSManager
from wsmanager.core.targets import Target
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
UNICODE = "币安人生usdt@trade"


def test_time_unit_is_kept_on_raw_urls(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(url=exchange.url + "?timeUnit=MICROSECOND")
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert flows(exchange, recorder, TRADE)
    [connection] = exchange.connections()
    assert connection.path == "/ws/btcusdt@trade?timeUnit=MICROSECOND"
    assert recorder.messages[-1]["E"] > time.time() * 1e5  # microseconds


def test_time_unit_is_kept_on_combined_urls_and_after_subscribe(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(time_unit="microsecond", streams_per_connection=200)
    first, second = Recorder(), Recorder()
    manager.subscribe(TRADE, first)
    assert flows(exchange, first, TRADE)
    manager.subscribe("ethusdt@aggTrade", second)
    assert flows(exchange, second, "ethusdt@aggTrade")
    [connection] = exchange.connections()
    assert connection.path == "/stream?streams=btcusdt@trade&timeUnit=MICROSECOND"
    assert connection.streams == {TRADE, "ethusdt@aggTrade"}
    assert second.messages[-1]["T"] > time.time() * 1e5
    with pytest.raises(ValueError, match="time_unit"):
        WSManager(url=exchange.url, time_unit="nanosecond")


def test_target_urls_keep_the_query_and_encode_unicode() -> None:
    raw = Target("wss://h/ws", False, "timeUnit=MICROSECOND")
    assert raw.url([UNICODE])[0] == (
        "wss://h/ws/" + quote("币安人生usdt") + "@trade?timeUnit=MICROSECOND"
    )
    combined = Target("wss://h/ws", True, "timeUnit=MICROSECOND")
    url, named = combined.url([TRADE, UNICODE])
    assert url == (
        "wss://h/stream?streams=btcusdt@trade/"
        + quote("币安人生usdt")
        + "@trade&timeUnit=MICROSECOND"
    )
    assert named == [TRADE, UNICODE]
    assert combined.url([], names_in_url=False)[0] == "wss://h/stream?timeUnit=MICROSECOND"


@pytest.mark.parametrize("per_connection", [1, 200])
def test_a_unicode_stream_is_carried_end_to_end(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], per_connection: int
) -> None:
    manager = make_manager(streams_per_connection=per_connection)
    recorder, later = Recorder(), Recorder()
    manager.subscribe(UNICODE, recorder)
    assert flows(exchange, recorder, UNICODE)
    assert recorder.messages[-1]["s"] == "币安人生USDT"
    assert quote("币安人生usdt") in exchange.connections()[0].path
    manager.subscribe("币安人生usdt@aggTrade", later)
    assert flows(exchange, later, "币安人生usdt@aggTrade")
    if per_connection > 1:  # sent as it is in SUBSCRIBE
        requests = [entry.request for entry in exchange.control_log()]
        assert {"method": "SUBSCRIBE", "params": ["币安人生usdt@aggTrade"]}.items() <= (
            requests[-1].items()
        )
    assert manager.get_metrics().invalid_messages == 0
    for bad in ("币安 usdt@trade", "币安%usdt@trade", "币安/usdt@trade", "币安\u0000@trade"):
        with pytest.raises(InvalidStreamNameError):
            manager.subscribe(bad, print)


def test_reference_price_without_e_and_block_trades_are_delivered(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(streams_per_connection=200)
    prices, blocks = Recorder(), Recorder()
    manager.subscribe("bnbbtc@referencePrice", prices)
    manager.subscribe("bnbbtc@blockTrade", blocks)
    assert exchange.wait_for_open("bnbbtc@blockTrade")
    for _ in range(5):
        exchange.publish("bnbbtc@referencePrice")
        exchange.publish("bnbbtc@blockTrade")
    assert prices.wait_messages(5) and blocks.wait_messages(5)
    assert all("E" not in m for m in prices.messages)
    assert None in [m["r"] for m in prices.messages]
    assert [m["t"] for m in blocks.messages] == [1, 2, 3, 4, 5]


def _reconnect(exchange: FakeExchange, stream: str) -> None:
    attempts = exchange.stats(stream).attempts
    exchange.drop(stream)
    assert exchange.wait_for_attempts(stream, attempts + 1)
    assert exchange.wait_for_open(stream)


def test_an_id_restart_after_a_reconnect_is_delivered_with_one_reset(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    gaps: list[Gap] = []
    manager = make_manager()
    manager.on_gap(gaps.append)
    recorder = Recorder()
    exchange.restart_ids(TRADE, 2_000_000)
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE)
    for _ in range(3):
        exchange.publish(TRADE)
    assert recorder.wait_messages(3)
    _reconnect(exchange, TRADE)
    exchange.restart_ids(TRADE)  # a testnet reset: t starts again at 1
    for _ in range(3):
        exchange.publish(TRADE)
    assert recorder.wait_messages(6)
    assert [m["t"] for m in recorder.messages] == [2_000_000, 2_000_001, 2_000_002, 1, 2, 3]
    assert wait_for(lambda: len(gaps) == 1)
    assert gaps == [Gap(TRADE, 2_000_003, 1, True, reset=True)]
    assert manager.get_metrics().duplicates_dropped == 0


def test_a_small_repeat_after_a_reconnect_is_still_a_duplicate(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    gaps: list[Gap] = []
    manager = make_manager(sequence_reset_threshold=5)
    manager.on_gap(gaps.append)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE)
    for _ in range(10):
        exchange.publish(TRADE)
    assert recorder.wait_messages(10)
    _reconnect(exchange, TRADE)
    exchange.repeat(TRADE, 2)  # t = 10 again, twice: not past the last
    exchange.publish(TRADE)
    assert recorder.wait_messages(11)
    assert [m["t"] for m in recorder.messages][-2:] == [10, 11]
    assert wait_for(lambda: manager.get_metrics().duplicates_dropped == 2)
    assert gaps == []


def test_one_bogus_number_far_ahead_cannot_stop_the_stream(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    gaps: list[Gap] = []
    manager = make_manager(sequence_reset_threshold=1000)
    manager.on_gap(gaps.append)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE)
    exchange.publish(TRADE)
    exchange.publish(TRADE, {"e": "trade", "t": 10**15})
    for _ in range(3):
        exchange.publish(TRADE)
    assert recorder.wait_messages(5)
    assert [m["t"] for m in recorder.messages] == [1, 10**15, 2, 3, 4]
    assert wait_for(lambda: len(gaps) == 2)
    assert [g.reset for g in gaps] == [False, True]


def test_stream_url_keeps_the_query_at_the_end_and_encodes_unicode() -> None:
    from wsmanager.config import stream_url

    assert stream_url("wss://h/ws/?timeUnit=MICROSECOND", TRADE) == (
        "wss://h/ws/btcusdt@trade?timeUnit=MICROSECOND"
    )
    assert stream_url("wss://h/ws", UNICODE) == "wss://h/ws/" + quote("币安人生usdt") + "@trade"
