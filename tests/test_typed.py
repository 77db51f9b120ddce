"""Typed messages: ``WSManager(typed=True)`` (issue 19, 4).

Each test was seen failing on the code before (``typed`` was an unknown option)."""

from __future__ import annotations

import builtins
import importlib
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from conftest import FAST, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange
from wsmanager.typed import (
    AggTrade,
    BlockTrade,
    BookTicker,
    DepthUpdate,
    Kline,
    MarkPrice,
    MiniTicker,
    PartialDepth,
    ReferencePrice,
    Ticker,
    Trade,
)

MakeManager = Callable[..., WSManager]
E = 1_700_000_000_000

PAYLOADS: list[tuple[str, dict[str, Any], type, dict[str, Any]]] = [
    (
        "btcusdt@trade",
        {
            "e": "trade",
            "E": E,
            "s": "BTCUSDT",
            "t": 12,
            "p": "0.001",
            "q": "100",
            "T": E,
            "m": True,
            "M": True,
            "new": "ignored",
        },
        Trade,
        {
            "trade_id": 12,
            "price": Decimal("0.001"),
            "quantity": Decimal("100"),
            "symbol": "BTCUSDT",
            "event_time": E,
            "buyer_is_maker": True,
        },
    ),
    (
        "btcusdt@aggTrade",
        {
            "e": "aggTrade",
            "E": E,
            "s": "BTCUSDT",
            "a": 5,
            "p": "1.5",
            "q": "2",
            "f": 100,
            "l": 105,
            "T": E,
            "m": False,
            "M": True,
        },
        AggTrade,
        {"agg_trade_id": 5, "first_trade_id": 100, "last_trade_id": 105, "price": Decimal("1.5")},
    ),
    (
        "btcusdt@depth@100ms",
        {
            "e": "depthUpdate",
            "E": E,
            "s": "BTCUSDT",
            "U": 157,
            "u": 160,
            "b": [["0.0024", "10"]],
            "a": [["0.0026", "100"], ["0.0027", "0"]],
        },
        DepthUpdate,
        {
            "first_update_id": 157,
            "final_update_id": 160,
            "previous_final_update_id": None,
            "bids": ((Decimal("0.0024"), Decimal("10")),),
            "asks": ((Decimal("0.0026"), Decimal("100")), (Decimal("0.0027"), Decimal("0"))),
        },
    ),
    (  # futures depth: pu and T
        "btcusdt@depth",
        {
            "e": "depthUpdate",
            "E": E,
            "T": E - 1,
            "s": "BTCUSDT",
            "U": 157,
            "u": 160,
            "pu": 149,
            "b": [["7403.89", "0.002"]],
            "a": [],
        },
        DepthUpdate,
        {"previous_final_update_id": 149, "transaction_time": E - 1, "asks": ()},
    ),
    (
        "btcusdt@depth5",
        {"lastUpdateId": 160, "bids": [["0.0024", "10"]], "asks": [["0.0026", "100"]]},
        PartialDepth,
        {"last_update_id": 160, "bids": ((Decimal("0.0024"), Decimal("10")),)},
    ),
    (  # futures partial depth is a depthUpdate
        "btcusdt@depth10@500ms",
        {
            "e": "depthUpdate",
            "E": E,
            "T": E,
            "s": "BTCUSDT",
            "U": 1,
            "u": 2,
            "pu": 0,
            "b": [],
            "a": [["1", "2"]],
        },
        DepthUpdate,
        {"final_update_id": 2, "previous_final_update_id": 0},
    ),
    (
        "btcusdt@bookTicker",
        {
            "u": 400900217,
            "s": "BTCUSDT",
            "b": "25.35190000",
            "B": "31.21000000",
            "a": "25.36520000",
            "A": "40.66000000",
        },
        BookTicker,
        {
            "update_id": 400900217,
            "best_bid_price": Decimal("25.3519"),
            "best_ask_quantity": Decimal("40.66"),
            "event_time": None,
        },
    ),
    (
        "btcusdt@kline_1m",
        {
            "e": "kline",
            "E": E,
            "s": "BTCUSDT",
            "k": {
                "t": 1,
                "T": 2,
                "s": "BTCUSDT",
                "i": "1m",
                "f": 100,
                "L": 200,
                "o": "0.0010",
                "c": "0.0020",
                "h": "0.0025",
                "l": "0.0015",
                "v": "1000",
                "n": 100,
                "x": False,
                "q": "1.0000",
                "V": "500",
                "Q": "0.500",
                "B": "123456",
            },
        },
        Kline,
        {"symbol": "BTCUSDT"},
    ),
    (
        "btcusdt@ticker",
        {
            "e": "24hrTicker",
            "E": E,
            "s": "BTCUSDT",
            "p": "0.0015",
            "P": "250.00",
            "w": "0.0018",
            "x": "0.0009",
            "c": "0.0025",
            "Q": "10",
            "b": "0.0024",
            "B": "10",
            "a": "0.0026",
            "A": "100",
            "o": "0.0010",
            "h": "0.0025",
            "l": "0.0010",
            "v": "10000",
            "q": "18",
            "O": 0,
            "C": 86400000,
            "F": 0,
            "L": 18150,
            "n": 18151,
        },
        Ticker,
        {
            "last_price": Decimal("0.0025"),
            "trade_count": 18151,
            "first_trade_price": Decimal("0.0009"),
        },
    ),
    (
        "btcusdt@miniTicker",
        {
            "e": "24hrMiniTicker",
            "E": E,
            "s": "BTCUSDT",
            "c": "0.0025",
            "o": "0.0010",
            "h": "0.0025",
            "l": "0.0010",
            "v": "10000",
            "q": "18",
        },
        MiniTicker,
        {"close_price": Decimal("0.0025"), "quote_volume": Decimal("18")},
    ),
    (
        "btcusdt@markPrice",
        {
            "e": "markPriceUpdate",
            "E": E,
            "s": "BTCUSDT",
            "p": "11794.15000000",
            "i": "11784.62659091",
            "P": "11784.25641265",
            "r": "0.00038167",
            "T": 1562306400000,
        },
        MarkPrice,
        {"mark_price": Decimal("11794.15"), "funding_rate": Decimal("0.00038167")},
    ),
    (
        "btcusdt@referencePrice",
        {"e": "referencePrice", "s": "BTCUSDT", "r": None, "t": 1},
        ReferencePrice,
        {"reference_price": None, "time": 1},
    ),
    (
        "btcusdt@blockTrade",
        {"e": "blockTrade", "E": E, "s": "BTCUSDT", "t": 9, "p": "100.5", "q": "3", "T": E},
        BlockTrade,
        {"price": Decimal("100.5"), "trade_id": 9},
    ),
]


@pytest.mark.parametrize("per_connection", [1, 200], ids=["raw", "combined"])
def test_every_documented_payload_arrives_typed(
    make_manager: MakeManager, exchange: FakeExchange, per_connection: int
) -> None:
    manager = make_manager(typed=True, streams_per_connection=per_connection)
    recorders = {}
    for stream, _payload, _cls, _fields in PAYLOADS:
        recorders[stream] = Recorder()
        manager.subscribe(stream, recorders[stream])
    for stream, payload, cls, fields in PAYLOADS:
        recorder = recorders[stream]
        assert wait_for(
            lambda s=stream, p=payload, r=recorder: exchange.publish(s, p) > 0 and bool(r.messages)
        )
        message = recorder.messages[-1]
        assert type(message) is cls, (stream, message)
        for name, value in fields.items():
            assert getattr(message, name) == value, (stream, name)


def test_typed_messages_are_immutable_and_ignore_unknown_fields() -> None:
    _stream, payload, cls, _ = PAYLOADS[0]
    message = msgspec.json.decode(msgspec.json.encode(payload), type=cls)
    with pytest.raises(AttributeError):
        message.price = Decimal(1)  # type: ignore[misc]
    assert not hasattr(message, "new")
    assert hash(message) == hash(msgspec.json.decode(msgspec.json.encode(payload), type=cls))


def test_unknown_events_and_streams_arrive_as_dicts(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager(typed=True)
    trades = Recorder()
    other = Recorder()
    manager.subscribe("btcusdt@trade", trades)
    manager.subscribe("btcusdt@forceOrder", other)  # no typed class: dicts
    odd = {"e": "somethingNew", "E": E, "x": 1}
    assert wait_for(lambda: exchange.publish("btcusdt@trade", odd) > 0 and bool(trades.messages))
    assert trades.messages[-1] == odd and type(trades.messages[-1]) is dict
    assert wait_for(lambda: exchange.publish("btcusdt@forceOrder") > 0 and bool(other.messages))
    assert isinstance(other.messages[-1], dict)


def test_typed_and_dict_subscribers_share_a_stream(
    make_manager: MakeManager, exchange: FakeExchange
) -> None:
    manager = make_manager(typed=True, streams_per_connection=200)
    typed = Recorder()
    plain = Recorder()
    batches: list[list[Any]] = []
    manager.subscribe("btcusdt@trade", typed)
    manager.subscribe("btcusdt@trade", plain, typed=False)
    manager.subscribe("btcusdt@trade", batches.append, batch=True)
    assert wait_for(lambda: exchange.publish("btcusdt@trade") > 0 and bool(plain.messages))
    assert wait_for(lambda: bool(typed.messages) and bool(batches))
    assert type(typed.messages[-1]) is Trade
    assert isinstance(plain.messages[-1], dict) and "t" in plain.messages[-1]
    assert type(batches[-1][-1]) is Trade
    assert typed.messages[-1].trade_id == plain.messages[-1]["t"]
    assert manager.get_active_streams_count() == 1


def test_an_order_book_and_a_recording_of_a_typed_manager_get_dicts(tmp_path: Path) -> None:
    from wsmanager.record import Recorder as StreamRecorder

    with FakeExchange(rate=20, seed=3) as exchange:
        manager = WSManager(url=exchange.url, **{**FAST, "typed": True})
        try:
            book = manager.order_book("BTCUSDT", exchange.rest_url, limit=100)
            seen = Recorder()
            manager.subscribe("btcusdt@depth@100ms", seen)  # the book's stream, typed here
            assert book.wait_synced(10)
            assert wait_for(lambda: bool(seen.messages))
            assert type(seen.messages[-1]) is DepthUpdate
            with StreamRecorder(
                manager, ["btcusdt@depth@100ms"], tmp_path / "rec.jsonl.gz"
            ) as recorder:
                assert wait_for(lambda: recorder.stats().messages >= 3)
            assert book.synced
        finally:
            manager.destroy()
    from wsmanager.recording import Message, read

    messages = [e for e in read(tmp_path / "rec.jsonl.gz") if isinstance(e, Message)]
    assert messages and all("U" in m.data for m in messages)  # the exchange's own keys


@pytest.fixture
def without_msgspec(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real_import = builtins.__import__

    def blocked(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "msgspec" or name.startswith("msgspec."):
            raise ImportError("No module named 'msgspec'")
        return real_import(name, *args, **kwargs)

    saved = {k: v for k, v in sys.modules.items() if k.startswith(("msgspec", "wsmanager.typed"))}
    for name in saved:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", blocked)
    yield
    monkeypatch.setattr(builtins, "__import__", real_import)
    sys.modules.update(saved)


def test_typed_without_msgspec_names_the_extra(without_msgspec: None) -> None:
    with pytest.raises(ImportError, match=r"wsmanager\[typed\]"):
        WSManager(url="ws://127.0.0.1:9/ws/", typed=True)
    manager = WSManager(url="ws://127.0.0.1:9/ws/")
    try:
        with pytest.raises(ImportError, match=r"wsmanager\[typed\]"):
            manager.subscribe("btcusdt@trade", print, typed=True)
    finally:
        manager.destroy()


def test_typed_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="typed"):
        WSManager(url="ws://127.0.0.1:9/ws/", typed="yes")
    assert importlib.import_module("wsmanager.typed").Trade is Trade  # back after the block
