"""The relay's pure rules (no Redis needed): keys, entry ids, start positions, the command's
parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import wsmanager.relay
from wsmanager.cli import relay as cli
from wsmanager.relay.entries import (
    IdAssigner,
    format_id,
    parse_id,
    sequence_field,
    stream_key,
    validate_start,
)


def test_keys_and_sequence_fields() -> None:
    assert stream_key("btcusdt@trade") == "wsmanager:btcusdt@trade"
    assert stream_key("btcusdt@trade", "{eu}:") == "{eu}:btcusdt@trade"
    assert sequence_field("btcusdt@trade") == "t"
    assert sequence_field("btcusdt@aggTrade") == "a"
    assert sequence_field("btcusdt@depth") == "u"
    assert sequence_field("btcusdt@depth@100ms") == "u"
    assert sequence_field("btcusdt@bookTicker") == "u"
    for stream in ("btcusdt@depth5", "btcusdt@ticker", "!bookTicker", "!ticker@arr", "x"):
        assert sequence_field(stream) is None, stream


def test_ids_of_a_sequenced_stream_are_its_sequence_numbers() -> None:
    ids = IdAssigner("btcusdt@trade")
    assert ids.sequence_of({"t": 5, "E": 1}) == 5 and ids.sequence_of([1]) is None
    assert ids.next(5, 1) == (5, 0)
    assert ids.next(5, 2) is None  # repeated: never written twice
    assert ids.next(4, 3) is None  # out of order
    assert ids.next(None, 4) == (5, 1)  # no number: right after the last one
    assert ids.next(6, 5) == (6, 0)
    assert ids.next(True, 6) == (6, 1)  # a bool is not a number
    assert ids.next(-3, 6) == (6, 2)
    first = IdAssigner("btcusdt@trade")
    assert first.next(0, 1) == (0, 1)  # Redis refuses 0-0
    ids.advance_past((100, 0))
    assert ids.next(99, 7) is None and ids.next(101, 8) == (101, 0)


def test_ids_of_other_streams_increase_with_time_and_never_repeat() -> None:
    ids = IdAssigner("btcusdt@ticker")
    assert ids.sequence_of({"t": 5}) is None
    assert ids.next(None, 1000) == (1000, 0)
    assert ids.next(None, 1000) == (1000, 1)
    assert ids.next(None, 999) == (1000, 2)  # the clock went back: still increasing
    assert ids.next(None, 1001) == (1001, 0)
    ids.advance_past((5000, 7))  # another writer wrote up to there
    assert ids.next(None, 1002) == (5000, 8)


def test_entry_ids_and_start_positions() -> None:
    assert parse_id(b"1700000000000-3") == (1700000000000, 3)
    assert parse_id("5-0") == (5, 0)
    assert format_id((5, 1)) == "5-1"
    for bad in (b"5", b"x-1", b"-1-0", b""):
        with pytest.raises(ValueError, match="entry id"):
            parse_id(bad)
    for start in ("$", "0", "1700000000000-0", "12"):
        assert validate_start(start) == start
    for start in ("", "latest", "1-", "-1", "$0"):
        with pytest.raises(ValueError, match="start must be"):
            validate_start(start)


def test_the_command_line_parser(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="wsmanager")
    commands = parser.add_subparsers(dest="command", required=True)
    cli.add_parser(commands)
    args = parser.parse_args(
        ["relay", "--redis", "redis://h:6379/0", "a@trade", "b@trade", "--maxlen", "5"]
    )
    assert args.command == "relay" and args.streams == ["a@trade", "b@trade"]
    assert args.maxlen == 5 and args.lease_ttl == 5.0 and args.group == "default"
    assert args.url == "wss://stream.binance.com:9443/ws/" and args.metrics_port is None
    streams = tmp_path / "streams.txt"
    streams.write_text("# majors\nbtcusdt@trade\n\n  ethusdt@trade  # second\n")
    assert cli.read_streams_file(streams) == ["btcusdt@trade", "ethusdt@trade"]


def test_the_package_exports_what_it_lists() -> None:
    for name in wsmanager.relay.__all__:
        assert getattr(wsmanager.relay, name) is not None
    with pytest.raises(AttributeError):
        wsmanager.relay.NoSuchThing  # noqa: B018
