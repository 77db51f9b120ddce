"""The fake exchange's past: its public archive and REST history, and how they meet the live
streams (the model the history client is tested against)."""

from __future__ import annotations

import hashlib
import io
import time
import zipfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
import requests
from conftest import FAST, Recorder, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange, PastSpec


@pytest.fixture
def market() -> Iterator[FakeExchange]:
    with FakeExchange(history=True, seed=7) as fake:
        yield fake


def _day(days_ago: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days_ago)).strftime("%Y-%m-%d")


def _csv(archive_url: str, path: str) -> tuple[bytes, list[list[str]]]:
    answer = requests.get(archive_url + path, timeout=10)
    assert answer.status_code == 200, path
    with zipfile.ZipFile(io.BytesIO(answer.content)) as archive:
        (name,) = archive.namelist()
        assert name == path.rsplit("/", 1)[1].replace(".zip", ".csv")
        text = archive.read(name).decode()
    return answer.content, [line.split(",") for line in text.splitlines()]


def _trades_path(day: str) -> str:
    return f"/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-{day}.zip"


def test_archive_days_with_checksums_and_the_latest_day_missing(market: FakeExchange) -> None:
    url = market.archive_url
    day = _day(2)
    data, rows = _csv(url, _trades_path(day))
    checksum = requests.get(url + _trades_path(day) + ".CHECKSUM", timeout=10).text
    assert checksum == f"{hashlib.sha256(data).hexdigest()}  BTCUSDT-aggTrades-{day}.zip\n"
    assert len(rows) == 86_400  # one aggregate trade a second
    assert len(rows[0]) == 8 and rows[0][6:] in (["True", "True"], ["False", "True"])
    ids = [int(r[0]) for r in rows]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    start = int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp() * 1_000_000)
    stamps = [int(r[5]) for r in rows]  # microseconds (2025 on)
    assert start <= stamps[0] and stamps[-1] < start + 86_400_000_000 and stamps == sorted(stamps)
    for days_ago in (0, 1):  # today is not over; yesterday is not published yet
        answer = requests.get(url + _trades_path(_day(days_ago)), timeout=10)
        assert answer.status_code == 404
    assert market.archive is not None and len(market.archive.requests()) == 4


def test_a_corrupted_file_no_longer_matches_its_checksum(market: FakeExchange) -> None:
    assert market.archive is not None
    path = _trades_path(_day(3))
    market.archive.corrupt(path)
    data = requests.get(market.archive_url + path, timeout=10).content
    digest = requests.get(market.archive_url + path + ".CHECKSUM", timeout=10).text.split()[0]
    assert hashlib.sha256(data).hexdigest() != digest


def test_archive_klines_are_made_of_the_archive_trades(market: FakeExchange) -> None:
    day = _day(2)
    _, trades = _csv(market.archive_url, _trades_path(day))
    _, klines = _csv(market.archive_url, f"/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")
    assert len(klines) == 1440
    for row in (klines[0], klines[777], klines[-1]):
        t, close_time = int(row[0]), int(row[6])
        assert close_time == t + 60_000_000 - 1  # microseconds
        inside = [r for r in trades if t <= int(r[5]) < t + 60_000_000]
        prices = [Decimal(r[1]) for r in inside]
        assert Decimal(row[1]) == prices[0] and Decimal(row[4]) == prices[-1]
        assert Decimal(row[2]) == max(prices) and Decimal(row[3]) == min(prices)
        assert Decimal(row[5]) == sum(Decimal(r[2]) for r in inside)
        assert int(row[8]) == sum(int(r[4]) - int(r[3]) + 1 for r in inside)


def test_milliseconds_before_2025_and_monthly_files() -> None:
    spec = PastSpec(start=datetime(2024, 12, 1, tzinfo=timezone.utc), trade_interval_ms=60_000)
    with FakeExchange(history=spec, seed=1) as fake:
        _, old = _csv(fake.archive_url, _trades_path("2024-12-31"))
        _, new = _csv(fake.archive_url, _trades_path("2025-01-01"))
        assert len(old) == len(new) == 1440
        assert int(old[-1][5]) < 1_735_689_600_000 <= int(new[0][5]) // 1000  # ms, then µs
        assert int(new[0][0]) == int(old[-1][0]) + 1
        month = "/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-12.zip"
        _, hours = _csv(fake.archive_url, month)
        assert len(hours) == 31 * 24 and int(hours[0][0]) == 1_733_011_200_000
        answer = requests.get(fake.archive_url + month.replace("2024-12", "2099-01"), timeout=10)
        assert answer.status_code == 404


def _rest(market: FakeExchange, path: str, **params: Any) -> requests.Response:
    return requests.get(market.rest_url + path, params={"symbol": "BTCUSDT", **params}, timeout=10)


def test_rest_history_pages_and_meets_the_live_stream(market: FakeExchange) -> None:
    day = _day(2)
    _, rows = _csv(market.archive_url, _trades_path(day))
    last = int(rows[-1][0])
    answer = _rest(market, "/api/v3/aggTrades", fromId=last - 1, limit=1000)
    assert answer.headers["X-MBX-USED-WEIGHT-1M"] == "4"
    page = answer.json()
    assert len(page) == 1000 and [t["a"] for t in page] == list(range(last - 1, last + 999))
    assert page[0]["T"] == int(rows[-2][5]) // 1000 and page[0]["p"] == rows[-2][1]
    assert _rest(market, "/api/v3/aggTrades", limit=1001).status_code == 400
    recent = _rest(market, "/api/v3/aggTrades", limit=5).json()
    recorder = Recorder()
    manager = WSManager(url=market.url, **FAST)
    try:
        manager.subscribe("btcusdt@aggTrade", recorder)
        assert market.wait_for_open("btcusdt@aggTrade")
        market.publish("btcusdt@aggTrade")
        assert recorder.wait_messages(1)
    finally:
        manager.destroy()
    assert recorder.messages[0]["a"] == recent[-1]["a"] + 1
    assert recorder.messages[0]["f"] == recent[-1]["l"] + 1
    after = _rest(market, "/api/v3/aggTrades", fromId=recent[-1]["a"], limit=10).json()
    assert [t["a"] for t in after] == [recent[-1]["a"], recorder.messages[0]["a"]]
    by_time = _rest(market, "/api/v3/aggTrades", startTime=page[5]["T"], limit=3).json()
    assert by_time == page[5:8]


def test_rest_klines_weight_paging_and_throttling(market: FakeExchange) -> None:
    day = _day(2)
    _, rows = _csv(market.archive_url, f"/data/spot/daily/klines/BTCUSDT/1m/BTCUSDT-1m-{day}.zip")
    start = int(rows[0][0]) // 1000
    answer = _rest(market, "/api/v3/klines", interval="1m", startTime=start, limit=1000)
    assert answer.headers["X-MBX-USED-WEIGHT-1M"] == "2"
    page = answer.json()
    assert len(page) == 1000 and page[0][0] == start and page[-1][0] == start + 999 * 60_000
    assert [str(v) for v in page[10][1:6]] == rows[10][1:6]
    assert _rest(market, "/api/v3/klines", interval="1m", limit=1001).status_code == 400
    assert _rest(market, "/api/v3/klines", interval="7m").status_code == 400
    recent = _rest(market, "/api/v3/klines", interval="1m", limit=2).json()
    assert recent[-1][0] == int(time.time() * 1000) // 60_000 * 60_000 or len(recent) == 2
    market.rest_throttle(429, retry_after=3)
    throttled = _rest(market, "/api/v3/klines", interval="1m")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"


def test_live_klines_close_a_candle_before_the_next(market: FakeExchange) -> None:
    recorder = Recorder()
    manager = WSManager(url=market.url, **FAST)
    try:
        manager.subscribe("btcusdt@kline_1s", recorder)
        assert market.wait_for_open("btcusdt@kline_1s")
        market.publish("btcusdt@kline_1s")
        assert recorder.wait_messages(1)
        first = recorder.messages[0]["k"]
        assert wait_for(lambda: time.time() * 1000 > first["T"] + 1)
        market.publish("btcusdt@kline_1s")
        assert recorder.wait_messages(3)
    finally:
        manager.destroy()
    closed, current = recorder.messages[1]["k"], recorder.messages[2]["k"]
    assert first["x"] is False and closed["x"] is True and closed["t"] == first["t"]
    assert current["x"] is False and current["t"] > first["t"]
    assert closed["T"] == closed["t"] + 999
