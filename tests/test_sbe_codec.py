"""The SBE codec (pure): every template against frames computed by hand from the schema, decimal
strings from mantissa and exponent, empty and largest groups, truncated and unsupported frames."""

from __future__ import annotations

from typing import Any

import pytest

from wsmanager.sbe import SbeDecodeError, UnsupportedFrameError, decimal_string, decode_frame
from wsmanager.testing.sbe import encode_payloads, encode_trades, to_mantissa


def le(value: int, size: int, signed: bool = False) -> bytes:
    """``value`` little-endian in ``size`` bytes (independent of the codec's structs)."""
    return value.to_bytes(size, "little", signed=signed)


def header(block_length: int, template: int, schema: int = 1, version: int = 0) -> bytes:
    return le(block_length, 2) + le(template, 2) + le(schema, 2) + le(version, 2)


def i64(value: int) -> bytes:
    return le(value, 8, signed=True)


def i8(value: int) -> bytes:
    return le(value, 1, signed=True)


def symbol(text: str) -> bytes:
    return le(len(text), 1) + text.encode()


E_US = 1_700_000_000_123_456  # microseconds


def trade_frame(trades: list[tuple[int, int, int, int]], pe: int = -8, qe: int = -8) -> bytes:
    body = i64(E_US) + i64(E_US - 7) + i8(pe) + i8(qe)  # 18 bytes
    group = le(25, 2) + le(len(trades), 4)  # groupSizeEncoding: uint16 blockLength, uint32 count
    rows = b"".join(i64(t) + i64(p) + i64(q) + le(m, 1) for t, p, q, m in trades)
    return header(18, 10000) + body + group + rows + symbol("BTCUSDT")


def levels16(levels: list[tuple[int, int]], block: int = 16) -> bytes:
    pad = b"\0" * (block - 16)
    return le(block, 2) + le(len(levels), 2) + b"".join(i64(p) + i64(q) + pad for p, q in levels)


# -- decimal strings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mantissa, exponent, text",
    [
        (2666124000000, -8, "26661.24000000"),
        (5, -8, "0.00000005"),
        (0, -8, "0.00000000"),
        (-5, -3, "-0.005"),
        (-2666124000000, -8, "-26661.24000000"),
        (123, 0, "123"),
        (7, 2, "700"),
        (0, 3, "0"),
        (-7, 2, "-700"),
        (1, -1, "0.1"),
        (2**63 - 1, -18, "9.223372036854775807"),
        (-(2**63), -2, "-92233720368547758.08"),
    ],
)
def test_decimal_strings_are_exact(mantissa: int, exponent: int, text: str) -> None:
    assert decimal_string(mantissa, exponent) == text


# -- every template --------------------------------------------------------------------------


def test_trades_one_dict_per_trade_in_order() -> None:
    frame = trade_frame([(17, 2666124000000, 1500000, 1), (18, 2666125000000, 100000000, 0)])
    assert len(frame) == 8 + 18 + 6 + 2 * 25 + 8
    assert decode_frame(frame) == [
        (
            "btcusdt@trade",
            {"e": "trade", "E": E_US, "s": "BTCUSDT", "t": 17, "p": "26661.24000000",
             "q": "0.01500000", "T": E_US - 7, "m": True, "M": True},
        ),
        (
            "btcusdt@trade",
            {"e": "trade", "E": E_US, "s": "BTCUSDT", "t": 18, "p": "26661.25000000",
             "q": "1.00000000", "T": E_US - 7, "m": False, "M": True},
        ),
    ]  # fmt: skip


def test_trades_empty_group() -> None:
    assert decode_frame(trade_frame([])) == []


def test_best_bid_ask_with_positive_and_zero_exponents() -> None:
    body = i64(E_US) + i64(987654321) + i8(0) + i8(2)
    body += i64(26661) + i64(3) + i64(26662) + i64(0)
    assert len(body) == 50
    frame = header(50, 10001) + body + symbol("ETHBTC")
    assert decode_frame(frame) == [
        (
            "ethbtc@bestBidAsk",
            {"e": "bestBidAsk", "E": E_US, "u": 987654321, "s": "ETHBTC",
             "b": "26661", "B": "300", "a": "26662", "A": "0"},
        )
    ]  # fmt: skip


def test_depth_snapshot() -> None:
    body = i64(E_US) + i64(555) + i8(-2) + i8(-3)
    frame = (
        header(18, 10002)
        + body
        + levels16([(2666124, 1500), (2666100, 1)])
        + levels16([(2666200, -1)])
        + symbol("BNBUSDT")
    )
    assert decode_frame(frame) == [
        (
            "bnbusdt@depth20",
            {
                "e": "depth20",
                "E": E_US,
                "s": "BNBUSDT",
                "lastUpdateId": 555,
                "bids": [["26661.24", "1.500"], ["26661.00", "0.001"]],
                "asks": [["26662.00", "-0.001"]],
            },
        )
    ]


def test_depth_diff_with_empty_groups() -> None:
    body = i64(E_US) + i64(100) + i64(104) + i8(-8) + i8(-8)
    frame = header(26, 10003) + body + levels16([]) + levels16([]) + symbol("BTCUSDT")
    assert decode_frame(frame) == [
        (
            "btcusdt@depth",
            {"e": "depthUpdate", "E": E_US, "s": "BTCUSDT", "U": 100, "u": 104, "b": [], "a": []},
        )
    ]


def test_depth_diff_one_side() -> None:
    body = i64(E_US) + i64(100) + i64(100) + i8(-8) + i8(-8)
    frame = header(26, 10003) + body + levels16([]) + levels16([(1, 0)]) + symbol("BTCUSDT")
    payload = decode_frame(frame)[0][1]
    assert (payload["b"], payload["a"]) == ([], [["0.00000001", "0.00000000"]])


def test_largest_uint16_group_count() -> None:
    levels = [(i, i + 1) for i in range(65535)]
    body = i64(E_US) + i64(1) + i64(2) + i8(0) + i8(0)
    frame = header(26, 10003) + body + levels16(levels) + levels16(levels) + symbol("X")
    payload = decode_frame(frame)[0][1]
    assert len(payload["b"]) == len(payload["a"]) == 65535
    assert payload["a"][-1] == ["65534", "65535"]


def test_largest_uint32_trade_count_without_rows_is_refused_at_once() -> None:
    body = i64(E_US) + i64(E_US) + i8(-8) + i8(-8)
    frame = header(18, 10000) + body + le(25, 2) + le(2**31 - 1, 4) + symbol("BTCUSDT")
    with pytest.raises(SbeDecodeError, match="truncated"):
        decode_frame(frame)


def test_block_lengths_larger_than_the_schema_are_skipped() -> None:
    """SBE readers honour the declared block lengths (room for fields added at the end)."""
    body = i64(E_US) + i64(1) + i64(2) + i8(-1) + i8(-1) + b"\xff" * 6
    frame = header(32, 10003) + body + levels16([(15, 25)], block=20) + levels16([]) + symbol("A")
    assert decode_frame(frame)[0][1]["b"] == [["1.5", "2.5"]]


def test_trade_rows_longer_than_the_schema_are_read_by_their_block_length() -> None:
    body = i64(E_US) + i64(E_US) + i8(-2) + i8(0)
    rows = b"".join(i64(t) + i64(150) + i64(2) + le(1, 1) + b"\xee" * 5 for t in (7, 8))
    frame = header(18, 10000) + body + le(30, 2) + le(2, 4) + rows + symbol("BTCUSDT")
    decoded = [payload for _, payload in decode_frame(frame)]
    assert [(d["t"], d["p"], d["q"], d["m"]) for d in decoded] == [
        (7, "1.50", "2", True),
        (8, "1.50", "2", True),
    ]


def test_non_ascii_symbol_is_utf8() -> None:
    body = i64(E_US) + i64(1) + i64(2) + i8(0) + i8(0)
    name = "币安USDT".encode()
    frame = header(26, 10003) + body + levels16([]) + levels16([]) + le(len(name), 1) + name
    stream, payload = decode_frame(frame)[0]
    assert (stream, payload["s"]) == ("币安usdt@depth", "币安USDT")


# -- refused frames --------------------------------------------------------------------------


def test_every_truncation_is_an_error() -> None:
    frames = [
        trade_frame([(1, 2, 3, 0), (2, 3, 4, 1)]),
        header(50, 10001) + b"\0" * 50 + symbol("BTCUSDT"),
        header(18, 10002) + b"\0" * 18 + levels16([(1, 2)]) + levels16([(3, 4)]) + symbol("B"),
        header(26, 10003) + b"\0" * 26 + levels16([(1, 2)]) + levels16([(3, 4)]) + symbol("B"),
    ]
    for frame in frames:
        decode_frame(frame)  # whole: fine
        for end in range(len(frame)):
            with pytest.raises(SbeDecodeError):
                decode_frame(frame[:end])


@pytest.mark.parametrize(
    "schema, version, template, match",
    [
        (1, 1, 10000, "version 1"),
        (2, 0, 10000, "schema 2"),
        (1, 0, 10004, "template id 10004"),
        (1, 0, 50, "template id 50"),
    ],
)
def test_unknown_schema_version_or_template(
    schema: int, version: int, template: int, match: str
) -> None:
    frame = header(18, template, schema, version) + trade_frame([(1, 1, 1, 0)])[8:]
    with pytest.raises(UnsupportedFrameError, match=match):
        decode_frame(frame)
    assert issubclass(UnsupportedFrameError, SbeDecodeError)
    assert issubclass(SbeDecodeError, ValueError)


def test_block_length_shorter_than_the_schema_is_an_error() -> None:
    frame = header(17, 10000) + trade_frame([])[8:]
    with pytest.raises(SbeDecodeError, match="block length"):
        decode_frame(frame)


def test_group_block_length_shorter_than_a_row_is_an_error() -> None:
    body = i64(E_US) + i64(1) + i64(2) + i8(0) + i8(0)
    frame = header(26, 10003) + body + le(8, 2) + le(1, 2) + b"\0" * 8 + levels16([]) + symbol("A")
    with pytest.raises(SbeDecodeError, match="group block length"):
        decode_frame(frame)


def test_symbol_not_utf8() -> None:
    frame = trade_frame([])[:-8] + b"\x02\xff\xfe"
    with pytest.raises(SbeDecodeError, match="UTF-8"):
        decode_frame(frame)


# -- the encoder -----------------------------------------------------------------------------


def test_encoder_matches_the_hand_computed_frame() -> None:
    trades = [(17, 2666124000000, 1500000, True), (18, 2666125000000, 100000000, False)]
    frame = encode_trades(event_time=E_US, transact_time=E_US - 7, symbol="BTCUSDT", trades=trades)
    assert frame == trade_frame([(t, p, q, int(m)) for t, p, q, m in trades])


def round_trip(payloads: list[dict[str, Any]], **exponents: int) -> list[dict[str, Any]]:
    return [payload for _, payload in decode_frame(encode_payloads(payloads, **exponents))]


def test_encoder_round_trips_every_template() -> None:
    trades = [
        {"e": "trade", "E": E_US, "s": "BTCUSDT", "t": t, "p": "26661.24000000",
         "q": "0.00100000", "T": E_US, "m": t % 2 == 0, "M": True}
        for t in (5, 6, 7)
    ]  # fmt: skip
    bba = {"e": "bestBidAsk", "E": E_US, "u": 9, "s": "BTCUSDT", "b": "1.00000000",
           "B": "2.00000000", "a": "3.00000000", "A": "4.00000000"}  # fmt: skip
    diff = {"e": "depthUpdate", "E": E_US, "s": "BTCUSDT", "U": 3, "u": 5,
            "b": [["2.00000000", "0.00000000"]], "a": [["3.00000000", "1.50000000"]]}  # fmt: skip
    snap = {"e": "depth20", "E": E_US, "s": "BTCUSDT", "lastUpdateId": 5,
            "bids": [["2.00000000", "0.10000000"]], "asks": []}  # fmt: skip
    assert round_trip(trades) == trades
    for payload in (bba, diff, snap):
        assert round_trip([payload]) == [payload]


def test_to_mantissa_is_exact() -> None:
    assert to_mantissa("26661.24", -8) == 2666124000000
    assert to_mantissa("700", 2) == 7
    with pytest.raises(ValueError, match="does not fit"):
        to_mantissa("0.123", -2)
