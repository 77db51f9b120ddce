"""A raw, fast benchmark exchange, run in its own process so it does not share our GIL.

It speaks just enough WebSocket: the opening handshake, then pre-framed server frames written
straight to the transport, so the server is never the bottleneck. The stream name says what to
send (``/ws/<name>``):

- ``burst-<N>@trade``     N trade messages (~180 bytes) as fast as possible, then stay open
- ``rate-<R>-<N>@trade``  N messages at R per second, each stamped with ``time.monotonic_ns()``
- ``idle@trade``          nothing
- ``drop-<N>@trade``      N messages, then an abrupt close, once per process (for recovery time)

A combined URL (``/stream?streams=a/b``) gets ``{"stream", "data"}`` envelopes: ``burst-<N>@…``
streams only, interleaved one message of each at a time.

Run: ``python bench/exchange.py PORT`` (prints ``ready`` when listening).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TRADE = {
    "e": "trade",
    "E": 1700000000000,
    "s": "BTCUSDT",
    "t": 0,
    "p": "43251.12000000",
    "q": "0.00210000",
    "b": 0,
    "a": 0,
    "T": 1700000000000,
    "m": True,
    "M": True,
}
_dropped: set[str] = set()


def frame(payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x81, n]) + payload
    if n < 65536:
        return bytes([0x81, 126]) + struct.pack("!H", n) + payload
    return bytes([0x81, 127]) + struct.pack("!Q", n) + payload


def trade(sequence: int, stamp: int = 0) -> bytes:
    message = dict(TRADE, t=sequence, E=stamp or TRADE["E"])
    return json.dumps(message, separators=(",", ":")).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    lines = request.decode().split("\r\n")
    path = lines[0].split(" ")[1]
    key = next(
        line.split(":", 1)[1].strip()
        for line in lines
        if line.lower().startswith("sec-websocket-key")
    )
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    writer.write(
        (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
    )
    if path.startswith("/stream?streams="):
        drain = asyncio.create_task(_discard(reader, writer))
        try:
            await _combined(path.split("=", 1)[1].split("/"), writer)
            await drain
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            drain.cancel()
            writer.close()
        return
    stream = path.rsplit("/", 1)[1]
    name = stream.split("@")[0]
    kind, *numbers = name.split("-")
    drain = asyncio.create_task(_discard(reader, writer))  # client pings/pongs/close
    try:
        if kind == "burst":
            count = int(numbers[0])
            blob = b"".join(frame(trade(i)) for i in range(count))
            for start in range(0, len(blob), 1 << 20):
                writer.write(blob[start : start + (1 << 20)])
                await writer.drain()
        elif kind == "drop" and stream not in _dropped:
            _dropped.add(stream)
            writer.write(b"".join(frame(trade(i)) for i in range(int(numbers[0]))))
            await writer.drain()
            writer.transport.abort()
            return
        elif kind in ("rate", "drop"):
            rate, count = (
                (float(numbers[0]), int(numbers[1])) if kind == "rate" else (1000.0, 10**9)
            )
            interval = 1 / rate
            next_at = time.monotonic()
            for i in range(count):
                writer.write(frame(trade(i, time.monotonic_ns())))
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif i % 64 == 0:
                    await asyncio.sleep(0)
            await writer.drain()
        await drain
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        drain.cancel()
        writer.close()


async def _combined(streams: list[str], writer: asyncio.StreamWriter) -> None:
    counts = {s: int(s.split("@")[0].split("-")[1]) for s in streams if s.startswith("burst-")}
    frames = []
    for i in range(max(counts.values(), default=0)):
        for stream, count in counts.items():
            if i < count:
                body = b'{"stream":"' + stream.encode() + b'","data":' + trade(i) + b"}"
                frames.append(frame(body))
    blob = b"".join(frames)
    for start in range(0, len(blob), 1 << 20):
        writer.write(blob[start : start + (1 << 20)])
        await writer.drain()


async def read_client_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, unmasked payload) of the client's next frame."""
    head = await reader.readexactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = struct.unpack("!H", await reader.readexactly(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if head[1] & 0x80 else b"\0\0\0\0"
    raw = await reader.readexactly(length)
    return head[0] & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(raw))


async def _discard(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer pings (opcode 9) with pongs; return when the client goes away."""
    try:
        while True:
            opcode, data = await read_client_frame(reader)
            if opcode == 9:
                writer.write(bytes([0x8A, len(data)]) + data)
            elif opcode == 8:
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        return


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 20)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
