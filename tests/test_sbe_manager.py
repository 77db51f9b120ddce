"""WSManager on SBE market data (``encoding="sbe"``, ``endpoint="spot-sbe"``) against the fake
exchange's SBE mode: the API key, one dict per trade, gaps and duplicates on SBE numbers, frames
the decoder refuses, combined connections under Binance's rules, and the key kept secret."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for
from prometheus_client import CollectorRegistry, generate_latest

from wsmanager import Gap, HandshakeRejectedError, WSManager
from wsmanager.endpoints import ENDPOINTS
from wsmanager.net.limits import HOST_BUDGETS
from wsmanager.record import Recorder as StreamRecorder
from wsmanager.recording import Message, read
from wsmanager.testing import BINANCE_SPOT_RULES, FakeExchange
from wsmanager.testing.sbe import encode_header

KEY = "Ab3xSECRETPARTOFTHEKEY0123456789"
TRADE = "btcusdt@trade"


@pytest.fixture
def sbe() -> Iterator[FakeExchange]:
    with FakeExchange(encoding="sbe", seed=11) as fake:
        yield fake


@pytest.fixture
def manager_for() -> Iterator[Callable[..., WSManager]]:
    managers: list[WSManager] = []

    def make(exchange: FakeExchange, **options: Any) -> WSManager:
        settings = {**FAST, "encoding": "sbe", "api_key": KEY, **options}
        manager = WSManager(url=exchange.url, **settings)
        managers.append(manager)
        return manager

    yield make
    for manager in managers:
        manager.destroy()
    HOST_BUDGETS.reset()


# -- configuration ----------------------------------------------------------------------------


def test_the_spot_sbe_preset() -> None:
    preset = ENDPOINTS["spot-sbe"]
    assert preset.url == "wss://stream-sbe.binance.com:9443/ws"
    assert preset.rest_url == "https://api.binance.com"
    assert preset.encoding == "sbe" and preset.options()["encoding"] == "sbe"
    assert ENDPOINTS["spot"].encoding == "json"


def test_a_missing_key_is_a_value_error_at_construction() -> None:
    with pytest.raises(ValueError, match="api_key"):
        WSManager(endpoint="spot-sbe")
    with pytest.raises(ValueError, match="api_key"):
        WSManager(url="ws://127.0.0.1:9/ws", encoding="sbe")
    with pytest.raises(ValueError, match="encoding"):
        WSManager(url="ws://127.0.0.1:9/ws", encoding="protobuf", api_key=KEY)


def test_a_key_that_could_break_the_header_is_refused_without_showing_it() -> None:
    with pytest.raises(ValueError) as error:
        WSManager(endpoint="spot-sbe", api_key="Ab3x SECRET\r\nX-Evil: 1")
    assert "SECRET" not in str(error.value) and "Ab3x" in str(error.value)


# -- data ---------------------------------------------------------------------------------------


def test_trades_of_one_event_arrive_as_separate_dicts_in_order(
    sbe: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(sbe)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert sbe.wait_for_open(TRADE)
    for _ in range(20):
        sbe.publish(TRADE)
    last = sbe.sequence(TRADE)
    assert last > 20  # several trades per event
    assert recorder.wait_messages(last)
    assert [m["t"] for m in recorder.messages] == list(range(1, last + 1))
    first = recorder.messages[0]
    assert set(first) == {"e", "E", "s", "t", "p", "q", "T", "m", "M"}
    assert first["e"] == "trade" and first["E"] > 10**15  # microseconds
    assert manager.get_metrics().invalid_messages == 0


def test_an_sbe_burst_with_default_options_arrives_whole_and_in_order(
    sbe: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    """Binary frames wait for room like JSON ones (back-pressure), instead of dropping."""
    manager = manager_for(sbe, ping_interval=20.0, ping_timeout=10.0, max_backpressure=None)
    ids: list[int] = []

    def slow_counter(message: dict[str, Any]) -> None:  # ~50 us: slower than a burst arrives
        ids.append(message["t"])
        started = time.perf_counter()
        while time.perf_counter() - started < 50e-6:
            pass

    manager.subscribe(TRADE, slow_counter)
    assert sbe.wait_for_open(TRADE)
    sbe.publish(TRADE, count=15_000)  # about 2 trades per event: some 30,000 messages
    last = sbe.sequence(TRADE)
    assert last > 20_000
    assert wait_for(
        lambda: len(ids) >= last or manager.get_metrics().dropped_messages > 0, 30 * SCALE
    )
    assert manager.get_metrics().dropped_messages == 0
    assert ids == list(range(1, last + 1))


def test_the_spot_sbe_endpoint_with_a_url_keeps_its_encoding(sbe: FakeExchange) -> None:
    with WSManager(sbe.url, endpoint="spot-sbe", api_key=KEY, **FAST) as manager:
        assert manager.config.encoding == "sbe"
        recorder = Recorder()
        manager.subscribe("ethusdt@bestBidAsk", recorder)
        assert sbe.wait_for_open("ethusdt@bestBidAsk")
        sbe.publish("ethusdt@bestBidAsk")
        assert recorder.wait_messages(1)
        assert recorder.messages[0]["e"] == "bestBidAsk"


def test_gaps_on_sbe_trade_ids(sbe: FakeExchange, manager_for: Callable[..., WSManager]) -> None:
    manager = manager_for(sbe)
    gaps: list[Gap] = []
    manager.on_gap(gaps.append)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert sbe.wait_for_open(TRADE)
    sbe.publish(TRADE)
    before = sbe.sequence(TRADE)
    sbe.skip(TRADE, 7)
    sbe.publish(TRADE)
    assert recorder.wait_messages(before + 1)
    assert wait_for(lambda: len(gaps) == 1)
    assert (gaps[0].stream, gaps[0].expected, gaps[0].received) == (TRADE, before + 1, before + 8)


def test_best_bid_ask_repeats_are_dropped_and_jumps_are_no_gap(
    sbe: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    stream = "btcusdt@bestBidAsk"
    manager = manager_for(sbe)
    gaps: list[Gap] = []
    manager.on_gap(gaps.append)
    recorder = Recorder()
    manager.subscribe(stream, recorder)
    assert sbe.wait_for_open(stream)
    sbe.publish(stream)
    sbe.repeat(stream, 2)  # duplicates: dropped
    sbe.skip(stream, 3)  # culled updates: ordered, not contiguous
    sbe.publish(stream)
    assert recorder.wait_messages(2)
    assert wait_for(lambda: manager.get_metrics().duplicates_dropped == 2)
    assert len(recorder.messages) == 2 and gaps == []
    assert recorder.messages[1]["u"] == sbe.sequence(stream)


@pytest.mark.parametrize(
    "bad",
    [
        encode_header(10005, 18) + b"\0" * 40,  # unknown template
        encode_header(10000, 18, version=1) + b"\0" * 40,  # unknown version
        encode_header(10000, 18, schema_id=2) + b"\0" * 40,  # unknown schema
        encode_header(10000, 18)[:5],  # truncated
    ],
    ids=["template", "version", "schema", "truncated"],
)
def test_frames_the_decoder_refuses_are_counted_invalid_and_the_stream_goes_on(
    sbe: FakeExchange, manager_for: Callable[..., WSManager], bad: bytes
) -> None:
    manager = manager_for(sbe)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert sbe.wait_for_open(TRADE)
    sbe.publish(TRADE, bad)
    sbe.publish(TRADE)
    assert recorder.wait_messages(sbe.sequence(TRADE))
    assert manager.get_metrics().invalid_messages == 1
    (info,) = manager.get_stream_info()
    assert info.invalid_messages == 1 and info.reconnects == 0


def test_a_refused_key_is_a_permanent_handshake_rejection(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(encoding="sbe", api_keys=["another-key"]) as fake:
        manager = manager_for(fake)
        recorder = Recorder()
        manager.subscribe(TRADE, recorder, on_error=recorder.on_error)
        assert recorder.wait(lambda r: len(r.errors) == 1)
        (error,) = recorder.errors
        assert isinstance(error, HandshakeRejectedError) and error.status_code == 401
        assert fake.total_attempts() == 1  # not retried
        assert KEY[4:] not in repr(error) and KEY[4:] not in str(error)


def test_combined_connections_route_binary_frames_and_keep_subscribe_pacing(
    manager_for: Callable[..., WSManager],
) -> None:
    symbols = [f"sym{i:02d}usdt" for i in range(8)]
    streams = [f"{s}@{kind}" for s in symbols for kind in ("trade", "bestBidAsk", "depth20")]
    with FakeExchange(encoding="sbe", rules=BINANCE_SPOT_RULES) as fake:
        manager = manager_for(fake, streams_per_connection=200)
        got: dict[str, list[Any]] = {s: [] for s in streams}
        lock = threading.Lock()

        def collect(stream: str) -> Callable[[Any], None]:
            def on_message(message: Any) -> None:
                with lock:
                    got[stream].append(message)

            return on_message

        for index, stream in enumerate(streams):  # bursts, as a program subscribes
            manager.subscribe(stream, collect(stream))
            if index % 5 == 4:
                wait_for(lambda: False, 0.03)
        assert fake.wait_until(lambda: all(fake.stats(s).open == 1 for s in streams), 10 * SCALE)
        for stream in streams:
            fake.publish(stream)
        assert wait_for(lambda: all(got[s] for s in streams), 10)
        assert len(fake.connections()) == 1
        for stream, messages in got.items():
            symbol = stream.split("@")[0].upper()
            assert all(m["s"] == symbol for m in messages), stream
        assert fake.violations() == []
        (connection,) = fake.connections()
        times = fake.client_message_times(connection.id)
        assert max(sum(1 for t in times if s <= t < s + 0.9) for s in times) <= 4


# -- the key stays secret ---------------------------------------------------------------------


def test_the_key_is_never_logged_nor_shown(
    caplog: pytest.LogCaptureFixture, manager_for: Callable[..., WSManager]
) -> None:
    secret = KEY[4:]
    caplog.set_level(logging.DEBUG)
    with FakeExchange(encoding="sbe") as fake:
        manager = manager_for(fake, debug=True)
        recorder = Recorder()
        manager.subscribe(TRADE, recorder)
        assert fake.wait_for_open(TRADE)
        fake.publish(TRADE)
        fake.publish(TRADE, b"\x01\x02")
        assert recorder.wait_messages(1)
        fake.drop(TRADE)
        assert fake.wait_for_open(TRADE)
        registry = CollectorRegistry()
        shown = [
            repr(manager),
            repr(manager.config),
            str(manager.get_stream_info()),
            str(manager.get_metrics()),
            str(manager.health()),
        ]
        with WSManager(
            url=fake.url, registry=registry, **{**FAST, "encoding": "sbe", "api_key": KEY}
        ):
            shown.append(generate_latest(registry).decode())
    with FakeExchange(encoding="sbe", api_keys=["other"]) as refusing:
        recorder = Recorder()
        manager = manager_for(refusing, debug=True)
        manager.subscribe(TRADE, recorder, on_error=recorder.on_error)
        assert recorder.wait(lambda r: len(r.errors) == 1)
        shown += [repr(recorder.errors[0]), str(recorder.errors[0])]
    # Everything on the client's side: wsmanager's and websocket-client's loggers (the fake
    # exchange's server library, python-websockets, logs the request headers it receives).
    client_records = [r for r in caplog.records if not r.name.startswith("websockets.")]
    assert any(r.levelno == logging.DEBUG for r in client_records)
    for record in client_records:
        assert secret not in record.getMessage(), record.getMessage()
        assert secret not in str(record.args) and secret not in (record.exc_text or "")
    for text in shown:
        assert secret not in text
    assert KEY in manager.config.api_key  # kept, just never shown


# -- record and replay ------------------------------------------------------------------------


def test_an_sbe_recording_replays_as_binary_frames_into_the_same_dicts(
    sbe: FakeExchange, manager_for: Callable[..., WSManager], tmp_path: Path
) -> None:
    streams = [TRADE, "btcusdt@depth", "btcusdt@bestBidAsk"]
    path = tmp_path / "sbe.jsonl.gz"
    live = manager_for(sbe)
    got = {stream: Recorder() for stream in streams}
    for stream in streams:
        live.subscribe(stream, got[stream])
    with StreamRecorder(live, streams, path) as recording:
        assert sbe.wait_until(lambda: all(sbe.stats(s).open == 1 for s in streams))
        for _ in range(5):
            for stream in streams:
                sbe.publish(stream)
        assert got[TRADE].wait_messages(sbe.sequence(TRADE))
        for stream in streams[1:]:
            assert got[stream].wait_messages(5)
        total = sum(len(r.messages) for r in got.values())
        assert wait_for(lambda: recording.stats().messages >= total)
    entries = [e for e in read(path) if isinstance(e, Message)]
    recorded = {s: [e.data for e in entries if e.stream == s] for s in streams}
    assert recorded == {s: got[s].messages for s in streams}
    with FakeExchange(encoding="sbe") as replaying:
        again = manager_for(replaying)
        replayed = {stream: Recorder() for stream in streams}
        for stream in streams:
            again.subscribe(stream, replayed[stream])
        assert replaying.wait_until(lambda: all(replaying.stats(s).open == 1 for s in streams))
        assert replaying.replay(path, speed=math.inf).wait(10 * SCALE)
        for stream in streams:
            assert replayed[stream].wait_messages(len(recorded[stream]))
        assert {s: replayed[s].messages for s in streams} == recorded
        assert again.get_metrics().invalid_messages == 0
