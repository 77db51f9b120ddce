"""``wsmanager book``: the live top of book, against a real stream and a real REST server."""

from __future__ import annotations

import argparse
import threading
from decimal import Decimal
from typing import Any

import pytest
from conftest import SCALE
from test_book_sync import RestServer, TrueBook

from wsmanager.book import BookView
from wsmanager.cli.book import add_parser, render, run
from wsmanager.testing import FakeExchange

D = Decimal


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wsmanager")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["book", *argv])


def test_render_shows_bids_beside_asks_best_first() -> None:
    view = BookView(True, 42, [(D("99.50"), D("1.5")), (D("99.00"), D("2"))],
                    [(D("100.00"), D("0.25000000"))])  # fmt: skip
    text = render("BTCUSDT", view, resyncs=1, levels=3).splitlines()
    assert text[0].startswith("BTCUSDT  synced at update 42  resyncs 1  spread 0.50")
    assert "bid price" in text[1] and "ask price" in text[1]
    assert text[2].split() == ["1.5", "99.50", "|", "100.00", "0.25000000"]
    assert text[3].split() == ["2", "99.00", "|"]
    assert len(text) == 5
    assert render("BTCUSDT", BookView(False, None, [], []), 0, 3) == (
        "BTCUSDT  not synced (syncing)  resyncs 0"
    )


def test_the_command_shows_the_live_book_as_plain_lines(
    exchange: FakeExchange, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = TrueBook(seed=3)
    rest = RestServer(lambda params: (200, truth.snapshot()))
    stop = threading.Event()

    def publish() -> None:
        exchange.wait_for_open("btcusdt@depth@100ms")
        while not stop.wait(0.02):
            exchange.publish("btcusdt@depth@100ms", truth.step())

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        code = run(parse("BTCUSDT", "--levels", "3", "--url", exchange.url, "--rest-url",
                         rest.url, "--seconds", f"{1.5 * SCALE}", "--interval", "0.2"))  # fmt: skip
    finally:
        stop.set()
        publisher.join()
        rest.close()
    out = capsys.readouterr().out
    assert code == 0
    assert "\x1b[" not in out  # not a terminal: no redraw codes
    assert "synced at update" in out
    last = out[out.rindex("t=") :].splitlines()
    assert len(last) == 5 and "|" in last[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["BTCUSDT", "--url", "ws://127.0.0.1:9/ws/"], "--rest-url is needed"),
        (["BTCUSDT", "--levels", "0"], "must be positive"),
        (["BTC/USDT", "--url", "ws://127.0.0.1:9/ws/", "--rest-url", "http://x"], "symbol"),
        (["BTCUSDT", "--url", "ftp://x", "--rest-url", "http://x"], "url"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parse(*argv)) == 2
    assert message in capsys.readouterr().err


def test_a_refused_snapshot_exits_1(
    exchange: FakeExchange, capsys: pytest.CaptureFixture[str]
) -> None:
    rest = RestServer(lambda params: (400, {"code": -1121, "msg": "Invalid symbol."}))
    truth = TrueBook()
    stop = threading.Event()

    def publish() -> None:
        exchange.wait_for_open("nopeusdt@depth@100ms")
        while not stop.wait(0.02):
            exchange.publish("nopeusdt@depth@100ms", truth.step())

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        args: Any = parse("NOPEUSDT", "--url", exchange.url, "--rest-url", rest.url,
                          "--seconds", "10", "--interval", "0.1")  # fmt: skip
        assert run(args) == 1
    finally:
        stop.set()
        publisher.join()
        rest.close()
    assert "Invalid symbol" in capsys.readouterr().err


def test_by_default_the_command_runs_against_the_bundled_exchange(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse("ETHUSDT", "--levels", "2", "--seconds", f"{1.5 * SCALE}", "--interval", "0.3",
                 "--rate", "20")  # fmt: skip
    assert run(args) == 0
    captured = capsys.readouterr()
    assert "fake exchange at ws://127.0.0.1:" in captured.err
    assert "ETHUSDT  synced at update" in captured.out
