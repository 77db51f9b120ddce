"""The fake exchange's SBE mode (``FakeExchange(encoding="sbe")``) on its own, driven by a plain
client: the API key at the handshake, JSON control, binary frames sequenced as the real exchange
sends them, no envelope on combined connections, REST snapshots, and replays as binary frames."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SCALE
from test_fake_exchange import request, ws_client
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection

from wsmanager.recording import RecordingWriter, encode_message
from wsmanager.sbe import decode_frame
from wsmanager.testing import FakeExchange

KEY = "Ed25519-test-key-0123456789"
HEADERS = {"X-MBX-APIKEY": KEY}


@pytest.fixture
def sbe() -> Iterator[FakeExchange]:
    with FakeExchange(encoding="sbe", seed=7) as fake:
        yield fake


def binary(ws: ClientConnection, timeout: float = 2.0) -> list[tuple[str, dict[str, Any]]]:
    message = ws.recv(timeout=timeout * SCALE)
    assert isinstance(message, bytes), message
    return decode_frame(message)


def test_the_handshake_needs_an_api_key(sbe: FakeExchange) -> None:
    with pytest.raises(InvalidStatus) as missing:
        ws_client(sbe.stream_url("btcusdt@trade"))
    assert missing.value.response.status_code == 401
    assert json.loads(missing.value.response.body)["code"] == -2015
    with ws_client(sbe.stream_url("btcusdt@trade"), additional_headers=HEADERS):
        pass


def test_only_the_keys_it_knows_when_given() -> None:
    with FakeExchange(encoding="sbe", api_keys=["good-key"]) as fake:
        with pytest.raises(InvalidStatus) as refused:
            ws_client(fake.stream_url("btcusdt@trade"), additional_headers=HEADERS)
        assert refused.value.response.status_code == 401
        with ws_client(
            fake.stream_url("btcusdt@trade"), additional_headers={"X-MBX-APIKEY": "good-key"}
        ):
            pass


def test_a_json_exchange_needs_no_key(exchange: FakeExchange) -> None:
    with ws_client(exchange.stream_url("btcusdt@trade")) as ws:
        exchange.publish("btcusdt@trade")
        assert isinstance(ws.recv(timeout=2 * SCALE), str)


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="encoding"):
        FakeExchange(encoding="fix")
    with pytest.raises(TypeError, match="api_keys"):
        FakeExchange(encoding="sbe", api_keys="one-key")


def test_trades_come_several_per_frame_with_contiguous_ids(sbe: FakeExchange) -> None:
    with ws_client(sbe.stream_url("btcusdt@trade"), additional_headers=HEADERS) as ws:
        sbe.wait_for_open("btcusdt@trade")
        for _ in range(30):
            sbe.publish("btcusdt@trade")
        frames = [binary(ws) for _ in range(30)]
    ids = [payload["t"] for frame in frames for _, payload in frame]
    assert ids == list(range(1, len(ids) + 1))
    assert max(len(frame) for frame in frames) > 1  # several trades in one event
    assert sbe.sequence("btcusdt@trade") == ids[-1]
    stream, first = frames[0][0]
    assert stream == "btcusdt@trade"
    assert first["E"] > 1_600_000_000_000_000  # microseconds
    assert (first["e"], first["s"], first["M"]) == ("trade", "BTCUSDT", True)


def test_skipped_trade_ids_are_a_hole(sbe: FakeExchange) -> None:
    with ws_client(sbe.stream_url("btcusdt@trade"), additional_headers=HEADERS) as ws:
        sbe.wait_for_open("btcusdt@trade")
        sbe.publish("btcusdt@trade")
        last = binary(ws)[-1][1]["t"]
        sbe.skip("btcusdt@trade", 5)
        sbe.publish("btcusdt@trade")
        assert binary(ws)[0][1]["t"] == last + 6


def test_control_stays_json_and_combined_frames_have_no_envelope(sbe: FakeExchange) -> None:
    streams = ["btcusdt@bestBidAsk", "btcusdt@depth", "btcusdt@depth20"]
    with ws_client(sbe.combined_url(), additional_headers=HEADERS) as ws:
        assert request(ws, "SUBSCRIBE", streams) == {"result": None, "id": 1}
        for stream in streams:
            sbe.publish(stream)
        received = [binary(ws)[0] for _ in streams]
    assert [stream for stream, _ in received] == streams
    (_, bba), (_, diff), (_, top) = received
    assert bba["e"] == "bestBidAsk" and bba["u"] == sbe.sequence("btcusdt@bestBidAsk")
    assert diff["e"] == "depthUpdate" and diff["U"] <= diff["u"]
    assert top["e"] == "depth20" and len(top["bids"]) == len(top["asks"]) == 20
    assert top["lastUpdateId"] == sbe.book("BTCUSDT").last_update_id


def test_depth_diffs_follow_on_and_match_the_true_book(sbe: FakeExchange) -> None:
    with ws_client(sbe.stream_url("ethusdt@depth"), additional_headers=HEADERS) as ws:
        sbe.wait_for_open("ethusdt@depth")
        for _ in range(20):
            sbe.publish("ethusdt@depth")
        events = [binary(ws)[0][1] for _ in range(20)]
    for before, after in itertools.pairwise(events):
        assert after["U"] == before["u"] + 1
    truth = sbe.book("ETHUSDT")
    assert truth.last_update_id == events[-1]["u"]


def test_bytes_are_sent_as_a_binary_frame_as_given(sbe: FakeExchange) -> None:
    with ws_client(sbe.stream_url("btcusdt@trade"), additional_headers=HEADERS) as ws:
        sbe.wait_for_open("btcusdt@trade")
        sbe.publish("btcusdt@trade", b"\x12\x00\x15\x27\x01\x00\x00\x00")
        assert ws.recv(timeout=2 * SCALE) == b"\x12\x00\x15\x27\x01\x00\x00\x00"


def test_a_replay_goes_out_as_binary_frames(sbe: FakeExchange, tmp_path: Path) -> None:
    path = tmp_path / "sbe.jsonl.gz"
    writer = RecordingWriter(path, streams=["btcusdt@trade"], url="", clock=lambda: 1e9)
    trades = [
        {"e": "trade", "E": 1_700_000_000_000_001, "s": "BTCUSDT", "t": n, "p": "1.00000000",
         "q": "2.00000000", "T": 1_700_000_000_000_000, "m": False, "M": True}
        for n in (41, 42)
    ]  # fmt: skip
    for n, trade in enumerate(trades):
        writer.write(encode_message(1e9 + n / 1000, "btcusdt@trade", trade))
    writer.close()
    with ws_client(sbe.stream_url("btcusdt@trade"), additional_headers=HEADERS) as ws:
        sbe.wait_for_open("btcusdt@trade")
        assert sbe.replay(path, speed=100).wait(5 * SCALE)
        assert [binary(ws)[0][1] for _ in trades] == trades
