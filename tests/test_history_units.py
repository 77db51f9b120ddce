"""The history client's pure parts: streams and times, strict parsing of archive rows, REST
answers and ``Retry-After`` (``responses`` for the REST unit only)."""

from __future__ import annotations

import email.utils
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
import responses

from wsmanager.history import parse_since
from wsmanager.history.convert import (
    agg_trades_from_csv,
    agg_trades_from_rest,
    klines_from_csv,
    klines_from_rest,
)
from wsmanager.history.rest import MAX_RETRY_AFTER, RestSource, parse_retry_after
from wsmanager.history.streams import HistoryError, HistoryStream, time_bounds

NOW = 1_796_500_000_000


def test_streams_with_history() -> None:
    assert HistoryStream.parse("btcusdt@aggTrade").symbol == "BTCUSDT"
    kline = HistoryStream.parse("ethusdt@kline_15m")
    assert (kline.kind, kline.interval, kline.interval_ms) == ("kline", "15m", 900_000)
    for stream in ("btcusdt@trade", "BTCUSDT@aggTrade", "btcusdt@kline_1M", "!ticker@arr"):
        with pytest.raises(ValueError, match="no history"):
            HistoryStream.parse(stream)


def test_time_bounds() -> None:
    assert time_bounds(timedelta(hours=1), now=NOW) == (NOW - 3_600_000, NOW)
    assert time_bounds(NOW - 5, NOW - 1, now=NOW) == (NOW - 5, NOW - 1)
    assert time_bounds(NOW - 5, NOW + 10**6, now=NOW) == (NOW - 5, NOW)  # until: at most now
    with pytest.raises(ValueError, match="future"):
        time_bounds(NOW + 1, now=NOW)
    with pytest.raises(ValueError, match="naive"):
        time_bounds(datetime(2026, 1, 1), now=NOW)
    with pytest.raises(TypeError):
        time_bounds(True, now=NOW)


def test_parse_since_for_the_command_line() -> None:
    assert parse_since("6h") == timedelta(hours=6)
    assert parse_since("30m") == timedelta(minutes=30)
    assert parse_since("2026-11-01") == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_since("2026-11-01T12:00+01:00").utcoffset() == timedelta(hours=1)
    assert parse_since("2026-11-01T12:00Z") == datetime(2026, 11, 1, 12, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


def test_retry_after_is_parsed_strictly_and_capped() -> None:
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after(" 12 ") == 12.0
    assert parse_retry_after("99999") == MAX_RETRY_AFTER
    assert parse_retry_after("9" * 11) == MAX_RETRY_AFTER
    for bad in ("1e9", "-1", "1.5", "nan", "inf", "\uff11", "5 s", "", None):
        assert parse_retry_after(bad) is None, bad
    now = time.time()
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (parse_retry_after(date, now) or 0) <= 31
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 10**7, usegmt=True), now) == (
        MAX_RETRY_AFTER
    )
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT") in (None, 0.0)  # a past date


def test_archive_rows_are_parsed_strictly() -> None:
    row = b"7,100.5,0.25,10,12,1735689600123456,True,True\n"
    (trade,) = agg_trades_from_csv(row, "BTCUSDT")
    assert trade == {
        "e": "aggTrade",
        "E": 1735689600123,
        "s": "BTCUSDT",
        "a": 7,
        "p": "100.5",
        "q": "0.25",
        "f": 10,
        "l": 12,
        "T": 1735689600123,
        "m": True,
        "M": True,
    }
    assert agg_trades_from_csv(row, "BTCUSDT", scale=1000)[0]["T"] == 1735689600123456
    header = b"agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,x,y\n"
    assert len(agg_trades_from_csv(header + row, "BTCUSDT")) == 1
    for bad in (
        b"7,100.5,0.25,10,12,1735689600123456,True\n",
        b"7,100.5,0.25,10,12,1735689600123456,yes,True\n",
        b"7,100.5,0.25,1_0,12,1735689600123456,True,True\n",
        b"7,100.5,0.25,+10,12,1735689600123456,True,True\n",
        b"7,1e5,0.25,10,12,1735689600123456,True,True\n",
        "7,100.5,0.25,\u0661,12,1735689600123456,True,True\n".encode(),
    ):
        with pytest.raises(ValueError):
            agg_trades_from_csv(bad, "BTCUSDT")
    kline = b"1735689600000000,1.0,2.0,0.5,1.5,10.0,1735689659999999,12.0,3,4.0,5.0,0\n"
    (candle,) = klines_from_csv(kline, "BTCUSDT", "1m")
    assert candle["E"] == candle["k"]["T"] == 1735689659999
    assert candle["k"]["t"] == 1735689600000 and candle["k"]["x"] is True
    assert "f" not in candle["k"] and "L" not in candle["k"]
    ms = b"1735603200000,1.0,2.0,0.5,1.5,10.0,1735603259999,12.0,3,4.0,5.0,0\n"
    assert klines_from_csv(ms, "BTCUSDT", "1m", scale=1000)[0]["k"]["T"] == 1735603259999999
    with pytest.raises(ValueError):
        klines_from_csv(kline.replace(b",3,", b",x,"), "BTCUSDT", "1m")


def test_rest_rows_are_parsed_strictly() -> None:
    good = {"a": 1, "p": "1.0", "q": "2.0", "f": 1, "l": 1, "T": 5, "m": False, "M": True}
    assert agg_trades_from_rest([good], "BTCUSDT")[0]["E"] == 5
    for bad in ({**good, "a": "1"}, {**good, "m": 0}, {**good, "p": 1.0}, {**good, "T": True}):
        with pytest.raises(ValueError):
            agg_trades_from_rest([bad], "BTCUSDT")
    row = [0, "1", "2", "0.5", "1.5", "10", 59_999, "12", 3, "4", "5", "0"]
    assert klines_from_rest([row], "BTCUSDT", "1m")[0]["k"]["T"] == 59_999
    with pytest.raises(ValueError):
        klines_from_rest([[*row[:8], "3", *row[9:]]], "BTCUSDT", "1m")
    with pytest.raises(ValueError):
        klines_from_rest({"code": -1121}, "BTCUSDT", "1m")


@responses.activate
def test_rest_honours_418_retry_after_and_refuses_4xx() -> None:
    url = "https://rest.example/api/v3/klines"
    responses.get(url, status=418, headers={"Retry-After": "1"}, json={"code": -1003})
    responses.get(url, status=200, json=[], headers={"X-MBX-USED-WEIGHT-1M": "12"})
    responses.get(url, status=400, json={"code": -1121, "msg": "Invalid symbol."})
    source = RestSource("https://rest.example", stream="x@kline_1m", stop=threading.Event())
    started = time.monotonic()
    assert source.get("/api/v3/klines", {"symbol": "X"}, 2) == []
    assert time.monotonic() - started >= 0.9 and source.throttled == 1
    with pytest.raises(HistoryError, match="Invalid symbol"):
        source.get("/api/v3/klines", {"symbol": "X"}, 2)
    source.close()
