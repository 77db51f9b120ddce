"""The frame reader's parse (pure: frames from a buffer, no socket): each call returns the
payloads of one opcode, in order, so text and binary messages never mix in one delivery."""

from __future__ import annotations

from wsmanager.net._wsclient import OPCODE_BINARY, OPCODE_TEXT, FastFrameBuffer

OPCODE_CONT, OPCODE_PING = 0x0, 0x9


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A server frame (unmasked), payload under 126 bytes."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, len(payload)]) + payload


def runs(wire: bytes) -> list[tuple[int, list[bytes]]]:
    """Every parse() call's (opcode, payloads) until nothing whole is left."""
    reader = FastFrameBuffer(None, wire, 1 << 20)
    calls: list[tuple[int, list[bytes]]] = []
    while True:
        out: list[bytes] = []
        if not reader.parse(out):
            return calls
        if out:
            calls.append((reader.opcode, out))


def test_each_parse_returns_the_messages_of_one_opcode_in_order() -> None:
    wire = b"".join(
        [
            frame(OPCODE_TEXT, b"t1"),
            frame(OPCODE_TEXT, b"t2"),
            frame(OPCODE_PING, b"p"),  # a ping does not end a run
            frame(OPCODE_BINARY, b"b1"),
            frame(OPCODE_BINARY, b"b2"),
            frame(OPCODE_TEXT, b"t3"),
        ]
    )
    assert runs(wire) == [
        (OPCODE_TEXT, [b"t1", b"t2"]),
        (OPCODE_BINARY, [b"b1", b"b2"]),
        (OPCODE_TEXT, [b"t3"]),
    ]


def test_a_fragmented_message_of_the_other_opcode_starts_the_next_call() -> None:
    wire = b"".join(
        [
            frame(OPCODE_TEXT, b"t1"),
            frame(OPCODE_BINARY, b"b-", fin=False),
            frame(OPCODE_CONT, b"one"),
            frame(OPCODE_BINARY, b"b2"),
            frame(OPCODE_TEXT, b"t-", fin=False),
            frame(OPCODE_CONT, b"two"),
        ]
    )
    assert runs(wire) == [
        (OPCODE_TEXT, [b"t1"]),
        (OPCODE_BINARY, [b"b-one", b"b2"]),
        (OPCODE_TEXT, [b"t-two"]),
    ]
