"""Frame decoding (stdlib and orjson) and the reactivex adapter."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SCALE
from reactivex import operators as ops

from wsmanager import WSManager
from wsmanager.decode import decode_json, decode_json_orjson, decode_json_stdlib
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
DECODERS = [decode_json_stdlib, decode_json_orjson]


@pytest.mark.parametrize("decode", DECODERS)
def test_decoders_agree_on_valid_frames(decode: Callable[[bytes], Any]) -> None:
    frame = '{"e":"trade","p":"1.5","n":[1,2.5,null,true],"s":"\u00e9\u20ac"}'.encode()
    assert decode(frame) == {"e": "trade", "p": "1.5", "n": [1, 2.5, None, True], "s": "é€"}


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    "frame",
    [b"{bad", b'"\xff"', b'"\xed\xa0\x80"', b'"\xc3"', b"\x22\x00\xe9\x00\x22\x00", b""],
    ids=["not-json", "invalid-byte", "surrogate", "truncated", "utf16-looking", "empty"],
)
def test_decoders_reject_invalid_json_and_invalid_utf8(
    decode: Callable[[bytes], Any], frame: bytes
) -> None:
    with pytest.raises(ValueError):
        decode(frame)


def test_orjson_is_used_when_installed() -> None:
    assert decode_json is decode_json_orjson


def test_the_seed_pipeline_with_reactivex(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    got: list[dict[str, Any]] = []
    done = threading.Event()

    def on_next(trade: dict[str, Any]) -> None:
        got.append(trade)
        if len(got) == 2:
            done.set()

    subscription = (
        manager.observe(TRADE)
        .pipe(
            ops.map(lambda t: {"symbol": t["s"], "price": float(t["p"]), "timestamp": t["T"]}),
            ops.filter(lambda t: t["price"] > 50000),
        )
        .subscribe(on_next)
    )
    assert exchange.wait_for_open(TRADE, 1)
    for price in ("49000", "51000", "40000", "60000"):
        exchange.publish(TRADE, {"e": "trade", "s": "BTCUSDT", "p": price, "T": 1})
    assert done.wait(5 * SCALE)
    assert [t["price"] for t in got] == [51000.0, 60000.0]
    subscription.dispose()
    assert manager.get_active_streams_count() == 0


def test_reactivex_gets_completion_and_errors(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    exchange.reject(404, stream="gone@trade")
    manager = make_manager()
    errors: list[Exception] = []
    completed = threading.Event()
    failed = threading.Event()
    manager.observe("gone@trade").subscribe(on_error=lambda e: (errors.append(e), failed.set()))
    manager.observe(TRADE).subscribe(on_completed=completed.set)
    assert failed.wait(5 * SCALE) and type(errors[0]).__name__ == "HandshakeRejectedError"
    assert exchange.wait_for_open(TRADE, 1)
    manager.force_cleanup_idle_streams(0)
    assert completed.wait(5 * SCALE)
