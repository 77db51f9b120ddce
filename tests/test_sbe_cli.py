"""``wsmanager stream ... --endpoint spot-sbe --api-key-env NAME`` and ``wsmanager book ...
--endpoint spot-sbe``: the key from the environment only, never printed; against the fake
exchange's SBE mode."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import SCALE

from wsmanager.cli.book import add_parser, run
from wsmanager.testing import FakeExchange

KEY = "Zq9wTHE-REST-OF-THE-KEY-IS-SECRET"
VAR = "WSMANAGER_TEST_SBE_KEY"


@pytest.fixture
def sbe() -> Iterator[FakeExchange]:
    with FakeExchange(encoding="sbe", api_keys=[KEY], seed=4) as fake:
        yield fake


def _cli(*args: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != VAR}
    if key is not None:
        env[VAR] = key
    return subprocess.run(
        [sys.executable, "-m", "wsmanager", *args],
        capture_output=True,
        text=True,
        timeout=60 * SCALE,
        check=False,
        env=env,
    )


def test_stream_reads_sbe_trades_with_the_key_from_the_environment(sbe: FakeExchange) -> None:
    sbe.set_rate(50)
    result = _cli("-v", "stream", "btcusdt@trade", "--endpoint", "spot-sbe", "--url", sbe.url,
                  "--api-key-env", VAR, "--count", "5")  # fmt: skip
    sbe.set_rate(0)
    assert result.returncode == 0, result.stderr[-2000:]
    trades = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(trades) == 5 and all(t["e"] == "trade" for t in trades)
    ids = [t["t"] for t in trades]
    assert ids == list(range(ids[0], ids[0] + 5))
    assert "DEBUG" in result.stderr  # -v: everything logged, and still no key
    assert KEY[4:] not in result.stdout + result.stderr


def test_stream_without_the_key_or_with_an_unset_variable_exits_2(sbe: FakeExchange) -> None:
    result = _cli("stream", "btcusdt@trade", "--endpoint", "spot-sbe", "--url", sbe.url)
    assert result.returncode == 2 and "api_key" in result.stderr
    result = _cli("stream", "btcusdt@trade", "--endpoint", "spot-sbe", "--url", sbe.url,
                  "--api-key-env", VAR, key=None)  # fmt: skip
    assert result.returncode == 2 and f"{VAR} is not set" in result.stderr


def test_a_refused_key_exits_1_without_showing_it(sbe: FakeExchange) -> None:
    wrong = "Wr0ngKEY-THAT-THE-EXCHANGE-REFUSES"
    result = _cli("-v", "stream", "btcusdt@trade", "--url", sbe.url, "--encoding", "sbe",
                  "--api-key-env", VAR, key=wrong)  # fmt: skip
    assert result.returncode == 1 and "401" in result.stderr
    assert wrong[4:] not in result.stdout + result.stderr


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="wsmanager")
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["book", *argv])


def test_book_on_spot_sbe_follows_the_20ms_depth_stream(
    sbe: FakeExchange, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, KEY)
    sbe.set_rate(20)
    args = parse("BTCUSDT", "--endpoint", "spot-sbe", "--url", sbe.url, "--rest-url",
                 sbe.rest_url, "--api-key-env", VAR, "--levels", "3", "--seconds",
                 f"{1.5 * SCALE}", "--interval", "0.3")  # fmt: skip
    assert run(args) == 0
    sbe.set_rate(0)
    captured = capsys.readouterr()
    assert "BTCUSDT  synced at update" in captured.out
    assert sbe.stats("btcusdt@depth").accepted == 1
    assert KEY[4:] not in captured.out + captured.err


def test_book_with_a_json_speed_on_sbe_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(VAR, KEY)
    args = parse("BTCUSDT", "--endpoint", "spot-sbe", "--url", "ws://127.0.0.1:9/ws",
                 "--api-key-env", VAR, "--speed", "100ms")  # fmt: skip
    assert run(args) == 2
    assert "20 ms" in capsys.readouterr().err
