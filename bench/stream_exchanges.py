"""The exchanges of ``bench/streams.py``'s cases, each run in a process of its own.

    python bench/stream_exchanges.py exchange RATE        # the FakeExchange, Binance's rules
    python bench/stream_exchanges.py serve STREAMS COUNT  # a raw exchange, pre-framed bursts

``exchange`` mode is driven over stdin (rate, what it saw); ``serve`` mode writes pre-framed
messages as fast as the socket takes them, so that it is never the bottleneck.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from exchange import read_client_frame

HERE = Path(__file__).resolve().parent


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def _json_line(stream: Any) -> Any:
    line = stream.readline()
    if not line:
        raise RuntimeError("the exchange process ended")
    return json.loads(line)


# -- the rule-enforcing exchange (``exchange`` mode, a child of a case) ---------------------------


def exchange_main(rate: float) -> None:
    """FakeExchange(rules=BINANCE_SPOT_RULES); one JSON answer per stdin command."""
    from wsmanager.testing import BINANCE_SPOT_RULES, FakeExchange

    with FakeExchange(rules=BINANCE_SPOT_RULES, rate=rate, seed=1) as exchange:
        print(json.dumps({"port": exchange.port}), flush=True)

        def carried() -> int:
            return len(set().union(*(c.streams for c in exchange.connections())))

        for line in sys.stdin:
            command, *args = line.split()
            answer: dict[str, Any] = {}
            if command == "rate":
                exchange.set_rate(float(args[0]))
            elif command == "wait_carried":  # every one of N streams carried by a connection
                count, timeout = int(args[0]), float(args[1])
                answer["ok"] = exchange.wait_until(_at_least(carried, count), timeout)
                answer["carried"] = carried()
            elif command == "wait_closed":  # every connection closed, so that all is counted
                answer["ok"] = exchange.wait_until(
                    lambda: exchange.open_connections() == 0, float(args[0])
                )
            elif command == "report":
                answer["violations"] = [f"{v.kind}: {v.detail}" for v in exchange.violations()]
                answer["attempts"] = exchange.total_attempts()
                answer["connections"] = [
                    {
                        "opened": c.opened_at,
                        "closed": c.closed_at,
                        "streams": len(c.streams),
                        "client_messages": c.client_messages,
                        "close_code": c.close_code,
                    }
                    for c in exchange.connections(open_only=False)
                ]
            else:
                break
            print(json.dumps(answer), flush=True)


def _at_least(measure: Callable[[], int], count: int) -> Callable[[], bool]:
    return lambda: measure() >= count


class RulesExchange:
    """The case's handle on its ``exchange`` child process."""

    def __init__(self, rate: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "exchange", str(rate)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(_json_line(self.process.stdout)["port"])
        self.url = f"ws://127.0.0.1:{self.port}/ws/"

    def ask(self, *command: object) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(map(str, command)) + "\n")
        self.process.stdin.flush()
        return dict(_json_line(self.process.stdout))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(30)


# -- the fast exchange (``serve`` mode) ----------------------------------------------------------

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TRADE = (
    '{"e":"trade","E":1700000000000,"s":"BTCUSDT","t":%d,"p":"43251.12000000",'
    '"q":"0.00210000","T":1700000000000,"m":true,"M":true}'
)


def _frame(payload: bytes, opcode: int = 0x1) -> bytes:
    n = len(payload)
    if n < 126:
        return bytes([0x80 | opcode, n]) + payload
    if n < 65536:
        return bytes([0x80 | opcode, 126]) + struct.pack("!H", n) + payload
    return bytes([0x80 | opcode, 127]) + struct.pack("!Q", n) + payload


def _burst(streams: list[str], per_stream: int, combined: bool) -> bytes:
    """``per_stream`` trades of each stream (``t`` from 1), the streams interleaved."""
    prefixes = [f'{{"stream":"{s}","data":'.encode() if combined else b"" for s in streams]
    suffix = b"}" if combined else b""
    frames = [
        _frame(prefix + (TRADE % t).encode() + suffix)
        for t in range(1, per_stream + 1)
        for prefix in prefixes
    ]
    return b"".join(frames)


class FastExchange:
    """Counts the streams carried; once ``expected`` are, every connection sends its burst."""

    def __init__(self, expected: int, per_stream: int) -> None:
        self.expected = expected
        self.per_stream = per_stream
        self.carried: set[str] = set()
        self.go = asyncio.Event()

    def carry(self, streams: list[str], mine: list[str]) -> None:
        mine.extend(s for s in streams if s not in mine)
        self.carried.update(streams)
        if len(self.carried) >= self.expected:
            self.go.set()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = request.split("\r\n")
        target = urlsplit(lines[0].split(" ")[1])
        key = next(ln.split(":", 1)[1].strip() for ln in lines if ln.lower().startswith("sec-"))
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        combined = target.path.startswith("/stream")
        mine: list[str] = []
        if combined:
            named = parse_qs(target.query).get("streams", [""])[0]
            self.carry([s for s in named.split("/") if s], mine)
        else:
            self.carry([target.path.rsplit("/", 1)[1]], mine)
        control = asyncio.create_task(self._control(reader, writer, mine))
        try:
            await self.go.wait()
            blob = _burst(mine, self.per_stream, combined)
            for start in range(0, len(blob), 1 << 20):
                writer.write(blob[start : start + (1 << 20)])
                await writer.drain()
            await control
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            control.cancel()
            writer.close()

    async def _control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mine: list[str]
    ) -> None:
        """Answer SUBSCRIBE, pings and the close frame; return when the client goes."""
        try:
            while True:
                opcode, data = await read_client_frame(reader)
                if opcode == 0x9:
                    writer.write(_frame(data, 0xA))
                elif opcode == 0x8:
                    writer.write(_frame(data[:2], 0x8))
                    return
                elif opcode == 0x1:
                    request = json.loads(data)
                    if request.get("method") == "SUBSCRIBE":
                        self.carry(list(request["params"]), mine)
                    answer = {"result": None, "id": request.get("id")}
                    writer.write(_frame(json.dumps(answer).encode()))
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def serve_main(expected: int, per_stream: int) -> None:
    async def main() -> None:
        exchange = FastExchange(expected, per_stream)
        server = await asyncio.start_server(exchange.handle, "127.0.0.1", 0, limit=1 << 20)
        print(json.dumps({"port": server.sockets[0].getsockname()[1]}), flush=True)
        async with server:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(main())


if __name__ == "__main__":
    if sys.argv[1] == "exchange":
        exchange_main(float(sys.argv[2]))
    elif sys.argv[1] == "serve":
        serve_main(int(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]!r}: exchange or serve")
