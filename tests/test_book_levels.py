"""The pure order book (levels) and Binance's sync procedure as a state machine."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from wsmanager.book.levels import BookSide, Levels
from wsmanager.book.sync import DepthSnapshot, DepthSync, EventOutcome, SnapshotOutcome

D = Decimal


def event(first: int, last: int, bids: Any = (), asks: Any = ()) -> dict[str, Any]:
    return {
        "e": "depthUpdate",
        "E": 1,
        "s": "BTCUSDT",
        "U": first,
        "u": last,
        "b": [list(level) for level in bids],
        "a": [list(level) for level in asks],
    }


def snapshot(last_update_id: int, bids: Any = (), asks: Any = ()) -> DepthSnapshot:
    return DepthSnapshot.parse(
        {
            "lastUpdateId": last_update_id,
            "bids": [list(level) for level in bids],
            "asks": [list(level) for level in asks],
        }
    )


# -- levels ------------------------------------------------------------------------------------


def test_bids_are_best_first_highest_price_first() -> None:
    side = BookSide(descending=True)
    side.apply([["100.5", "1"], ["101.25", "2"], ["99", "3"]])
    assert side.top() == [(D("101.25"), D("2")), (D("100.5"), D("1")), (D("99"), D("3"))]
    assert side.top(2) == [(D("101.25"), D("2")), (D("100.5"), D("1"))]
    assert side.best() == (D("101.25"), D("2"))


def test_asks_are_best_first_lowest_price_first() -> None:
    side = BookSide(descending=False)
    side.apply([["100.5", "1"], ["101.25", "2"], ["99", "3"]])
    assert side.top() == [(D("99"), D("3")), (D("100.5"), D("1")), (D("101.25"), D("2"))]
    assert side.top(1) == [(D("99"), D("3"))]
    assert side.top(0) == [] and side.top(10) == side.top()


def test_quantity_zero_removes_a_level_in_any_spelling_and_unknown_zero_is_a_no_op() -> None:
    side = BookSide(descending=True)
    side.apply([["10.00", "1"], ["11.00", "2"], ["12.00", "3"]])
    side.apply([["11.00", "0.00000000"], ["13.00", "0"], ["12.00", "00.0"]])
    assert side.top() == [(D("10.00"), D("1"))]
    assert len(side) == 1


def test_an_update_replaces_the_quantity_and_keeps_one_level() -> None:
    side = BookSide(descending=False)
    side.apply([["10.00", "1"]])
    side.apply([["10.00", "2.5"]])
    assert side.top() == [(D("10.00"), D("2.5"))]
    assert len(side) == 1


def test_prices_are_compared_as_numbers_not_strings() -> None:
    side = BookSide(descending=False)
    side.apply([["9.5", "1"], ["10.0", "1"], ["100", "1"]])
    side.apply([["10.00", "0"]])  # the same price spelled differently
    assert [p for p, _ in side.top()] == [D("9.5"), D("100")]


def test_decimal_values_are_exact() -> None:
    side = BookSide(descending=True)
    side.apply([["0.00000001", "123456789.12345678"], ["0.1", "0.2"]])
    assert side.top() == [(D("0.1"), D("0.2")), (D("0.00000001"), D("123456789.12345678"))]
    total = sum((q for _, q in side.top()), D(0))
    assert total == D("123456789.32345678")  # floats would say ...32345677
    assert str(side.best()[1]) == "0.2"  # type: ignore[index]


@pytest.mark.parametrize(
    "level",
    [["abc", "1"], ["1", "x"], ["-1", "1"], ["1", "-1"], ["0", "1"], ["NaN", "1"], ["1", "Inf"],
     ["1"], ["1", "2", "3"], [1.5, "1"], 12, [["1"], "2"], ["1", ""], ["1", "."],
     ["1", "1.2.3"], ["1", "1e5"], ["1", " 1"], ["1", 1], ["1e999", "1"]],
)  # fmt: skip
def test_a_bad_level_is_a_value_error_naming_it(level: Any) -> None:
    side = BookSide(descending=True)
    with pytest.raises(ValueError, match="bad price level"):
        side.apply([level])
    with pytest.raises(ValueError, match="bad price level"):
        side.load([level])


def test_load_replaces_the_side_and_skips_zero_quantities() -> None:
    levels = Levels()
    levels.apply([["1", "1"]], [["5", "1"]])
    levels.load([["2", "1"], ["3", "0"], ["1.5", "2"]], [["4", "1"]])
    assert levels.bids.top() == [(D("2"), D("1")), (D("1.5"), D("2"))]
    assert levels.asks.top() == [(D("4"), D("1"))]


def test_nothing_is_left_behind_by_levels_that_come_and_go() -> None:
    side = BookSide(descending=True)
    for i in range(2_000):
        side.apply([[f"{i}.5", "1"]])
        side.best()
        side.apply([[f"{i}.50", "0"]])  # removed under another spelling
    assert len(side) == 0 and side.top() == []
    internals = (side._quantity, side._key_of, side._price_of, side._keys)
    assert all(len(part) == 0 for part in internals)


def test_prices_beyond_float_precision_are_still_ordered_exactly() -> None:
    side = BookSide(descending=False)
    close = ["1.00000000000000003", "1.00000000000000001", "1.00000000000000002"]
    assert len({float(p) for p in close}) == 1  # one float for three prices
    side.apply([[close[0], "3"], ["2", "9"], [close[1], "1"]])
    side.apply([[close[2], "2"]])
    assert [p for p, _ in side.top()] == [D(close[1]), D(close[2]), D(close[0]), D("2")]
    side.apply([[close[2], "0"], ["1.000000000000000010", "7"]])  # respelled close[1]
    assert side.top() == [(D(close[1]), D("7")), (D(close[0]), D("3")), (D("2"), D("9"))]
    assert side.get(D(close[0])) == D("3") and side.get(D(close[2])) is None


def reference_apply(model: dict[Decimal, Decimal], changes: list[list[str]]) -> None:
    for price, quantity in changes:
        if Decimal(quantity):
            model[Decimal(price)] = Decimal(quantity)
        else:
            model.pop(Decimal(price), None)


@pytest.mark.parametrize("seed", range(5))
def test_random_changes_match_a_plain_dict_of_decimals(seed: int) -> None:
    import random

    rng = random.Random(seed)
    bids, asks = BookSide(descending=True), BookSide(descending=False)
    models: list[dict[Decimal, Decimal]] = [{}, {}]
    ticks = list(range(1, 400))

    def spell(tick: int) -> str:  # one price, several spellings; rarely, beyond a float's reach
        if seed % 2 and tick < 10:
            return f"5.0000000000000000{tick}" + "0" * rng.randint(0, 2)
        return rng.choice([f"{tick / 100:.2f}", f"{tick / 100:.8f}", f"{tick / 100}"])

    for _ in range(3_000):
        for side, model in zip((bids, asks), models, strict=True):
            changes = []
            for _ in range(rng.randint(0, 12)):
                quantity = rng.choice(["0", "0.00000000", "1", f"{rng.random():.8f}", "2.5"])
                changes.append([spell(rng.choice(ticks)), quantity])
            side.apply(changes)
            reference_apply(model, changes)
    for side, model in zip((bids, asks), models, strict=True):
        expected = sorted(model.items(), reverse=side.descending)
        assert side.top() == expected
        assert side.top(7) == expected[:7]
        assert side.best() == (expected[0] if expected else None)
        assert len(side) == len(model)


# -- the sync procedure -------------------------------------------------------------------------


def test_buffered_events_covered_by_the_snapshot_are_dropped_and_the_rest_applied() -> None:
    sync = DepthSync()
    assert not sync.needs_snapshot
    assert sync.on_event(event(101, 105, bids=[("10", "1")])) is EventOutcome.BUFFERED
    assert sync.needs_snapshot
    assert sync.on_event(event(106, 108, bids=[("10", "2")])) is EventOutcome.BUFFERED
    assert sync.on_event(event(109, 110, asks=[("11", "5")])) is EventOutcome.BUFFERED
    outcome = sync.on_snapshot(snapshot(107, bids=[("10", "9"), ("9", "1")], asks=[("12", "1")]))
    assert outcome is SnapshotOutcome.SYNCED
    # 101-105: older than the snapshot, dropped; 106-108 straddles 107: applied; 109-110 applied.
    assert sync.levels.bids.top() == [(D("10"), D("2")), (D("9"), D("1"))]
    assert sync.levels.asks.top() == [(D("11"), D("5")), (D("12"), D("1"))]
    assert sync.synced and sync.last_update_id == 110 and sync.syncs == 1
    assert not sync.needs_snapshot


def test_a_snapshot_older_than_the_first_buffered_event_is_retaken() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    assert sync.on_snapshot(snapshot(99)) is SnapshotOutcome.TOO_OLD  # 100 is missing
    assert not sync.synced and sync.too_old == 1 and sync.needs_snapshot
    assert sync.on_snapshot(snapshot(100)) is SnapshotOutcome.SYNCED  # 101 follows 100
    assert sync.last_update_id == 105


def test_a_snapshot_newer_than_every_buffered_event_is_the_book() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105, bids=[("1", "1")]))
    assert sync.on_snapshot(snapshot(200, bids=[("2", "2")])) is SnapshotOutcome.SYNCED
    assert sync.levels.bids.top() == [(D("2"), D("2"))] and sync.last_update_id == 200
    assert sync.on_event(event(150, 199)) is EventOutcome.IGNORED
    assert sync.on_event(event(195, 201, bids=[("2", "0")])) is EventOutcome.APPLIED
    assert sync.levels.bids.top() == [] and sync.last_update_id == 201


def test_old_and_duplicate_events_are_ignored_when_synced_and_when_buffering() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    assert sync.on_event(event(101, 105)) is EventOutcome.IGNORED
    assert sync.on_event(event(103, 104)) is EventOutcome.IGNORED
    assert sync.buffered == 1
    sync.on_snapshot(snapshot(104))
    assert sync.on_event(event(104, 105, bids=[("1", "1")])) is EventOutcome.IGNORED
    assert sync.levels.bids.top() == []


def test_a_gap_when_synced_empties_the_book_and_asks_for_a_new_snapshot() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    sync.on_snapshot(snapshot(105, bids=[("1", "1")]))
    assert sync.on_event(event(106, 107)) is EventOutcome.APPLIED
    assert sync.on_event(event(109, 110, bids=[("2", "1")])) is EventOutcome.GAP  # 108 lost
    assert not sync.synced and sync.last_update_id is None and sync.gaps == 1
    assert sync.levels.bids.top() == [] and sync.needs_snapshot
    assert sync.on_snapshot(snapshot(107)) is SnapshotOutcome.TOO_OLD
    assert sync.on_snapshot(snapshot(108, bids=[("1", "3")])) is SnapshotOutcome.SYNCED
    assert sync.levels.bids.top() == [(D("2"), D("1")), (D("1"), D("3"))]
    assert sync.syncs == 2


def test_a_gap_inside_the_buffer_drops_what_came_before_it() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    sync.on_event(event(110, 112))  # 106-109 lost
    assert sync.buffered == 1 and sync.gaps == 1
    assert sync.on_snapshot(snapshot(105)) is SnapshotOutcome.TOO_OLD
    assert sync.on_snapshot(snapshot(109)) is SnapshotOutcome.SYNCED


def test_the_buffer_is_bounded_and_drops_the_oldest() -> None:
    sync = DepthSync(max_buffered_events=3)
    for i in range(10):
        sync.on_event(event(100 + i, 100 + i))
    assert sync.buffered == 3
    assert sync.on_snapshot(snapshot(105)) is SnapshotOutcome.TOO_OLD  # 107 is the oldest kept
    assert sync.on_snapshot(snapshot(106)) is SnapshotOutcome.SYNCED
    assert sync.last_update_id == 109


@pytest.mark.parametrize(
    "bad",
    [
        {"e": "depthUpdate"},
        {"U": "1", "u": 2, "b": [], "a": []},
        {"U": 3, "u": 2, "b": [], "a": []},
        {"U": 1, "u": 2, "b": {}, "a": []},
        {"U": True, "u": 2, "b": [], "a": []},
        ["not", "a", "dict"],
        None,
    ],
)
def test_a_malformed_event_loses_sync_and_drops_the_buffer(bad: Any) -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    sync.on_snapshot(snapshot(105, bids=[("1", "1")]))
    assert sync.on_event(bad) is EventOutcome.INVALID
    assert not sync.synced and sync.levels.bids.top() == [] and not sync.needs_snapshot
    assert sync.invalid == 1


def test_an_event_with_a_bad_level_loses_sync_even_when_half_applied() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    sync.on_snapshot(snapshot(105, bids=[("1", "1")]))
    bad = event(106, 106, bids=[("2", "1")], asks=[("x", "1")])
    assert sync.on_event(bad) is EventOutcome.INVALID
    assert not sync.synced and sync.levels.bids.top() == []


def test_a_buffered_event_with_a_bad_level_fails_the_sync_and_waits_for_new_events() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105, bids=[("x", "1")]))
    assert sync.on_snapshot(snapshot(100)) is SnapshotOutcome.INVALID
    assert not sync.synced and not sync.needs_snapshot
    sync.on_event(event(106, 106))
    assert sync.on_snapshot(snapshot(105)) is SnapshotOutcome.SYNCED


def test_a_snapshot_with_a_bad_level_is_retaken_and_the_buffer_kept() -> None:
    sync = DepthSync()
    sync.on_event(event(101, 105))
    assert sync.on_snapshot(snapshot(105, bids=[("1", "-1")])) is SnapshotOutcome.INVALID
    assert sync.needs_snapshot
    assert sync.on_snapshot(snapshot(105)) is SnapshotOutcome.SYNCED


def test_a_snapshot_without_a_buffered_event_or_when_synced_is_unneeded() -> None:
    sync = DepthSync()
    assert sync.on_snapshot(snapshot(1)) is SnapshotOutcome.UNNEEDED
    sync.on_event(event(2, 2))
    sync.on_snapshot(snapshot(1))
    assert sync.on_snapshot(snapshot(1)) is SnapshotOutcome.UNNEEDED


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"bids": [], "asks": []},
        {"lastUpdateId": "1", "bids": [], "asks": []},
        {"lastUpdateId": 1, "bids": {}, "asks": []},
        {"lastUpdateId": 1, "bids": []},
    ],
)
def test_a_malformed_snapshot_document_is_a_value_error(document: Any) -> None:
    with pytest.raises(ValueError, match="depth snapshot"):
        DepthSnapshot.parse(document)
