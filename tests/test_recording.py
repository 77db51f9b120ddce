"""The recording file format on its own (wsmanager.recording): parts, rotation, reading back,
a writer killed mid-part, merging, and bad files."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from wsmanager import Gap
from wsmanager.recording import (
    Dropped,
    Ended,
    GapEntry,
    Header,
    Message,
    RecordingError,
    RecordingWriter,
    encode_dropped,
    encode_ended,
    encode_gap,
    encode_message,
    existing_parts,
    part_path,
    read,
    recorded_streams,
)


def trade(n: int) -> dict[str, object]:
    return {"e": "trade", "s": "BTCUSDT", "t": n, "p": f"{20000 + n}.00000000", "q": "1.0"}


def write_trades(path: Path, numbers: list[int], *, rotate_bytes: int | None = None) -> list[Path]:
    """A recording of btcusdt@trade with ``t`` in ``numbers``, one message per 10 ms."""
    writer = RecordingWriter(
        path,
        streams=["btcusdt@trade"],
        url="ws://x/ws/",
        clock=lambda: 1e9,
        rotate_bytes=rotate_bytes,
    )
    for i, n in enumerate(numbers):
        writer.write(encode_message(1e9 + i * 0.01, "btcusdt@trade", trade(n)))
        writer.flush()
    writer.close()
    return writer.parts


def test_part_names_keep_the_extension() -> None:
    assert part_path("d/day.jsonl.gz", 0) == Path("d/day.jsonl.gz")
    assert part_path("d/day.jsonl.gz", 1) == Path("d/day.1.jsonl.gz")
    assert part_path("x.gz", 12) == Path("x.12.gz")
    for bad in ("day.jsonl", "day", ".gz"):
        with pytest.raises(ValueError, match=r"must end in \.gz"):
            part_path(bad, 1)


def test_lines_round_trip_every_kind(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl.gz"
    streams = ["a@trade", "b@depth"]
    writer = RecordingWriter(path, streams=streams, url="ws://h/ws/", clock=lambda: 5.0)
    writer.write(encode_message(6.0, "a@trade", trade(1)))
    writer.write(encode_gap(6.5, Gap("a@trade", 2, 5, after_reconnect=True)))
    writer.write(encode_message(7.0, "a@trade", trade(5)))
    writer.write(encode_dropped(7.5, "b@depth", 3))
    writer.write(encode_ended(8.0, "b@depth", "StreamRejectedError: no"))
    writer.write('{"t":9.0,"future_kind":{"x":1}}\n')  # a kind this reader does not know
    writer.close()
    assert list(read(path)) == [
        Header(5.0, 0, ("a@trade", "b@depth"), "ws://h/ws/"),
        Message(6.0, "a@trade", trade(1)),
        GapEntry(6.5, Gap("a@trade", 2, 5, True)),
        Message(7.0, "a@trade", trade(5)),
        Dropped(7.5, "b@depth", 3),
        Ended(8.0, "b@depth", "StreamRejectedError: no"),
    ]
    assert recorded_streams(path) == ["a@trade", "b@depth"]
    # one line per entry, plain JSON: other tools read it too
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    assert json.loads(lines[1]) == {"t": 6.0, "stream": "a@trade", "data": trade(1)}


def test_rotation_makes_complete_parts_in_order(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl.gz"
    parts = write_trades(path, list(range(1, 401)), rotate_bytes=2000)
    assert len(parts) >= 3
    assert parts == existing_parts(path)
    assert parts[:3] == [path, tmp_path / "day.1.jsonl.gz", tmp_path / "day.2.jsonl.gz"]
    numbers = []
    for number, part in enumerate(parts):
        assert part.stat().st_size < 2000 + 1000  # rotated at the first flush past the size
        lines = gzip.decompress(part.read_bytes()).decode().splitlines()  # a complete gzip file
        assert json.loads(lines[0])["recording"]["part"] == number
        numbers += [json.loads(line)["data"]["t"] for line in lines[1:]]
    assert numbers == list(range(1, 401))
    reader = read(path)
    assert [e.data["t"] for e in reader if isinstance(e, Message)] == list(range(1, 401))
    assert reader.truncated_parts == []


def test_an_existing_recording_is_kept_unless_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "day.jsonl.gz"
    old = write_trades(path, list(range(1, 301)), rotate_bytes=1500)
    assert len(old) >= 3
    with pytest.raises(FileExistsError, match=f"{len(old)} part"):
        RecordingWriter(path, streams=["x@trade"], url="")
    assert existing_parts(path) == old
    writer = RecordingWriter(path, streams=["x@trade"], url="", overwrite=True)
    writer.close()
    assert existing_parts(path) == [path]  # the old parts are gone, not left to be replayed


def test_a_killed_writer_leaves_every_flushed_line_readable(tmp_path: Path) -> None:
    path = tmp_path / "k.jsonl.gz"
    writer = RecordingWriter(path, streams=["btcusdt@trade"], url="")
    for n in range(1, 101):
        writer.write(encode_message(float(n), "btcusdt@trade", trade(n)))
    writer.flush()
    for n in range(101, 111):  # written, not flushed: may be lost
        writer.write(encode_message(float(n), "btcusdt@trade", trade(n)))
    # "kill": copy the bytes on disk now, without the gzip trailer
    killed = tmp_path / "killed.jsonl.gz"
    shutil.copy(path, killed)
    writer.close()
    with pytest.raises(EOFError):
        gzip.decompress(killed.read_bytes())
    reader = read(killed)
    numbers = [e.data["t"] for e in reader if isinstance(e, Message)]
    assert numbers == list(range(1, 101))
    assert reader.truncated_parts == [killed]
    # cut mid-line too: the partial last line is left out, the others read
    data = killed.read_bytes()
    cut = tmp_path / "cut.jsonl.gz"
    for size in range(len(data) - 40, len(data), 7):
        cut.write_bytes(data[:size])
        got = [e.data["t"] for e in read(cut) if isinstance(e, Message)]
        assert got == list(range(1, len(got) + 1)) and len(got) >= 90
    # killed as the part was created: empty, and said so
    cut.write_bytes(b"")
    reader = read(cut)
    assert list(reader) == [] and reader.truncated_parts == [cut]


def test_several_recordings_merge_by_time(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    for path, times, stream in ((a, (1.0, 3.0, 5.0), "a@trade"), (b, (2.0, 4.0), "b@trade")):
        writer = RecordingWriter(path, streams=[stream], url="", clock=lambda: 0.0)
        for n, t in enumerate(times, 1):
            writer.write(encode_message(t, stream, trade(n)))
        writer.close()
    merged = [(e.t, e.stream) for e in read([a, b]) if isinstance(e, Message)]
    assert merged == [
        (1.0, "a@trade"),
        (2.0, "b@trade"),
        (3.0, "a@trade"),
        (4.0, "b@trade"),
        (5.0, "a@trade"),
    ]
    # naming the parts of one recording explicitly reads each part once
    parts = write_trades(tmp_path / "p.jsonl.gz", list(range(1, 201)), rotate_bytes=1500)
    got = [e.data["t"] for e in read(parts) if isinstance(e, Message)]
    assert got == list(range(1, 201))


def test_bad_recordings_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no recording at"):
        read(tmp_path / "missing.jsonl.gz")
    path = tmp_path / "bad.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"t":1,"stream":"a@trade","data":1}\n{"t":2,"stream":\n'))
    with pytest.raises(RecordingError, match=r"bad\.jsonl\.gz:2"):
        list(read(path))
    path.write_bytes(gzip.compress(b'{"stream":"a@trade","data":1}\n'))
    with pytest.raises(RecordingError, match=r'bad\.jsonl\.gz:1: no number "t"'):
        list(read(path))
    path.write_bytes(b"not gzip at all\n")
    with pytest.raises(RecordingError, match=r"bad\.jsonl\.gz"):
        list(read(path))
    with pytest.raises(ValueError, match="no recording given"):
        read([])
