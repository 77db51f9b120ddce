"""Futures order books: the futures procedure (pu chaining, ``/fapi/v1/depth`` snapshots) as a
pure state machine and through a routed ``usdm`` manager against the fake exchange's USD-M mode,
through chain breaks, drops and a ``serverShutdown``; futures backfill; ``wsmanager book
--endpoint usdm``."""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.book import depth_stream
from wsmanager.book.sync import DepthSnapshot, DepthSync, EventOutcome, SnapshotOutcome
from wsmanager.cli.book import add_parser, run
from wsmanager.testing import FakeExchange

ROUTED = {k: v for k, v in FAST.items() if k != "streams_per_connection"}
STREAM = "btcusdt@depth@100ms"


@pytest.fixture
def usdm() -> Iterator[FakeExchange]:
    with FakeExchange(market="usdm", seed=5) as fake:
        yield fake


def event(pu: int, first: int, last: int, bids: Any = (), asks: Any = ()) -> dict[str, Any]:
    return {"e": "depthUpdate", "U": first, "u": last, "pu": pu, "b": list(bids), "a": list(asks)}


def snapshot(last_update_id: int, bids: Any = (("10", "1"),), asks: Any = (("11", "1"),)) -> Any:
    return DepthSnapshot(last_update_id, [list(b) for b in bids], [list(a) for a in asks])


def test_the_futures_procedure_as_a_state_machine() -> None:
    sync = DepthSync(futures=True)
    assert sync.on_event(event(90, 95, 100)) is EventOutcome.BUFFERED
    assert sync.on_event(event(100, 104, 110, [["10", "2"]])) is EventOutcome.BUFFERED
    assert sync.on_event(event(100, 104, 110)) is EventOutcome.IGNORED  # a repeat
    assert sync.on_snapshot(snapshot(89)) is SnapshotOutcome.TOO_OLD  # older than the first pu
    # U jumps (95 after pu 90, 104 after 100): no gap. The first applied event has
    # U <= lastUpdateId <= u (104 <= 105 <= 110); 100 < 105 is dropped.
    assert sync.on_snapshot(snapshot(105)) is SnapshotOutcome.SYNCED
    assert sync.last_update_id == 110 and sync.levels.bids.best()[1] == 2  # type: ignore[index]
    assert sync.on_event(event(110, 115, 120)) is EventOutcome.APPLIED
    assert sync.on_event(event(119, 121, 125)) is EventOutcome.GAP  # pu != the previous u
    assert not sync.synced and sync.gaps == 1


def test_a_futures_snapshot_between_events_waits_for_the_chain() -> None:
    sync = DepthSync(futures=True)
    sync.on_event(event(90, 95, 100))
    # Between pu and U: ids no event shows. The next event (pu 100) continues the book.
    assert sync.on_snapshot(snapshot(102)) is SnapshotOutcome.SYNCED
    assert sync.last_update_id == 102
    assert sync.on_event(event(100, 104, 110)) is EventOutcome.APPLIED
    assert sync.on_event(event(110, 111, 112)) is EventOutcome.APPLIED
    # The spot procedure on the same events would see gaps everywhere.
    spot = DepthSync()
    spot.on_event(event(90, 95, 100))
    assert spot.on_event(event(100, 104, 110)) is EventOutcome.BUFFERED
    assert spot.gaps == 1


def test_futures_speeds() -> None:
    assert depth_stream("BTCUSDT", "250ms", "usdm") == "btcusdt@depth"
    assert depth_stream("BTCUSDT", "500ms", "coinm") == "btcusdt@depth@500ms"
    assert depth_stream("BTCUSDT", "100ms", "usdm") == "btcusdt@depth@100ms"
    assert depth_stream("BTCUSDT", "1000ms") == "btcusdt@depth"
    with pytest.raises(ValueError, match="'100ms' or '250ms' or '500ms' on usdm"):
        depth_stream("BTCUSDT", "1000ms", "usdm")
    with pytest.raises(ValueError, match="market must be one of"):
        depth_stream("BTCUSDT", "100ms", "options")


def _caught_up(book: Any, exchange: FakeExchange) -> bool:
    return bool(book.synced and book.last_update_id == exchange.book("BTCUSDT").last_update_id)


def test_a_futures_book_equals_the_true_book_through_faults(usdm: FakeExchange) -> None:
    rng = random.Random(18)
    with WSManager(url=usdm.root_url, endpoint="usdm", rest_url=usdm.rest_url, **ROUTED) as manager:
        book = manager.order_book("BTCUSDT", min_snapshot_interval=0.0)
        assert usdm.wait_for_open(STREAM)
        usdm.publish(STREAM)
        assert book.wait_synced(5 * SCALE)
        breaks = drops = 0
        for number in range(1000):
            draw = rng.random()
            if draw < 0.02:
                usdm.skip(STREAM, rng.randint(1, 5))  # an event never sent: the chain breaks
                breaks += 1
            elif draw < 0.03:
                attempts = usdm.stats(STREAM).attempts
                usdm.drop(STREAM)  # events published meanwhile are lost
                drops += 1
                if rng.random() < 0.5:
                    assert usdm.wait_for_attempts(STREAM, attempts + 1)
            if number == 500:
                usdm.server_shutdown()  # make-before-break to a new connection
            usdm.publish(STREAM)
        assert breaks and drops
        for _ in range(200):  # publish until the book has caught up (bounded)
            if wait_for(lambda: _caught_up(book, usdm), 0.05):
                break
            usdm.publish(STREAM)
        true = usdm.book("BTCUSDT")
        assert _caught_up(book, usdm)
        assert book.bids() == true.bids(1000) and book.asks() == true.asks(1000)
        # Each fault costs at most one resync (the spot procedure would resync on most events)
        assert 1 <= book.resyncs <= breaks + drops + 3, (book.resyncs, breaks, drops)
        paths = {request.path for request in usdm.rest_requests()}
        assert paths == {"/fapi/v1/depth"}  # never a spot path
        assert manager.get_metrics().rotations >= 1


def test_futures_backfill_asks_the_futures_path(usdm: FakeExchange) -> None:
    with WSManager(url=usdm.root_url, endpoint="usdm", rest_url=usdm.rest_url, **ROUTED) as manager:
        recorder = Recorder()
        manager.subscribe("btcusdt@aggTrade", recorder, backfill=True)
        assert usdm.wait_for_open("btcusdt@aggTrade")
        usdm.publish("btcusdt@aggTrade")
        usdm.skip("btcusdt@aggTrade", 3)
        usdm.publish("btcusdt@aggTrade")
        assert recorder.wait_messages(5)
        assert [m["a"] for m in recorder.messages] == [1, 2, 3, 4, 5]
        assert {r.path for r in usdm.rest_requests()} == {"/fapi/v1/aggTrades"}


def test_the_book_command_on_the_usdm_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="wsmanager")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["book", "BTCUSDT", "--endpoint", "usdm", "--fake", "--levels", "3", "--rate", "20",
         "--seconds", f"{2 * SCALE}", "--interval", "0.2"]
    )  # fmt: skip
    assert run(args) == 0
    captured = capsys.readouterr()
    assert "synced at update" in captured.out
    assert "/fapi" not in captured.err and "market usdm" in captured.err


def test_the_futures_demo_finishes_and_keeps_every_promise() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wsmanager", "demo", "--futures", "--seconds", "3"],
        capture_output=True,
        text=True,
        timeout=60 * SCALE,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "== summary ==" in out and "fault injected" in out
    assert "connections by route: /market 1, /public 1" in out
    assert "streams on a route that does not serve them: 0" in out
    assert "every stream delivered: yes" in out
    assert "equal to the exchange's true book at update" in out and ": yes" in out
    assert "REST paths asked: /fapi/v1/depth (never /api/v3)" in out


def test_a_coinm_book_follows_the_futures_procedure_on_dapi() -> None:
    with (
        FakeExchange(market="coinm", seed=9) as coinm,
        WSManager(url=coinm.url, endpoint="coinm", rest_url=coinm.rest_url, **FAST) as manager,
    ):
        gaps: list[Any] = []
        manager.on_gap(gaps.append)
        book = manager.order_book("BTCUSD_PERP", speed="500ms", min_snapshot_interval=0.0)
        stream = "btcusd_perp@depth@500ms"
        assert coinm.wait_for_open(stream)
        for _ in range(200):
            coinm.publish(stream)
        assert wait_for(lambda: _caught_up_to(book, coinm, "BTCUSD_PERP"))
        true = coinm.book("BTCUSD_PERP")
        assert book.bids() == true.bids(1000) and book.asks() == true.asks(1000)
        assert book.resyncs == 0 and gaps == []
        assert {r.path for r in coinm.rest_requests()} == {"/dapi/v1/depth"}


def _caught_up_to(book: Any, exchange: FakeExchange, symbol: str) -> bool:
    return bool(book.synced and book.last_update_id == exchange.book(symbol).last_update_id)
