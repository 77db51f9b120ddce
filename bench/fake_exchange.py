"""What the fake exchange itself costs: 1,000 streams at 10 msg/s each (10,000 msg/s).

The exchange runs in a child process (so its CPU time is its own, read from /proc); this process
holds the connections with raw sockets and only counts bytes. Printed: the messages the exchange
sent per second against the target, its CPU use (share of one core), the CPU per message, and
that figure relative to the floor measured in the same run (making and JSON-encoding the same
payloads with the exchange's own feeds, nothing sent).

Run: ``python bench/fake_exchange.py [--streams 1000] [--rate 10] [--connections 5]
[--seconds 10]`` (Linux).
"""

from __future__ import annotations

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time

from wsmanager.testing.market import Market

CHILD = """
import sys
from wsmanager.testing import FakeExchange
streams = [f"s{i}@trade" for i in range(int(sys.argv[2]))]
with FakeExchange(seed=1) as exchange:
    print(exchange.port, flush=True)
    for line in sys.stdin:                    # commands: go, sent, stop
        if line == "go\\n":
            exchange.set_rate(float(sys.argv[1]))
        elif line == "sent\\n":
            print(sum(exchange.stats(s).sent for s in streams), flush=True)
        else:
            break
"""


def command(child: subprocess.Popen[str], line: str) -> str:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(line + "\n")
    child.stdin.flush()
    return child.stdout.readline() if line == "sent" else ""


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def connect(port: int, streams: list[str]) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    path = "/stream?streams=" + "/".join(streams)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    sock.setblocking(False)
    return sock


def floor_per_message(streams: list[str], count: int) -> float:
    """CPU seconds to make and encode one payload with the exchange's feeds (no sending)."""
    market = Market(seed=1, book_levels=50)
    started = time.process_time()
    for i in range(count):
        market.publish(streams[i % len(streams)])
    return (time.process_time() - started) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    streams = [f"s{i}@trade" for i in range(args.streams)]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(args.rate), str(args.streams)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    port = int(child.stdout.readline())
    per = -(-len(streams) // args.connections)
    sockets = [connect(port, streams[i : i + per]) for i in range(0, len(streams), per)]
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    command(child, "go")
    received = 0
    warmup_end = time.monotonic() + 1.0
    while time.monotonic() < warmup_end:
        for key, _ in selector.select(0.1):
            received += len(key.fileobj.recv(1 << 20))  # type: ignore[union-attr]
    sent_start = int(command(child, "sent"))
    cpu_start, started, received = cpu_seconds(child.pid), time.monotonic(), 0
    while time.monotonic() - started < args.seconds:
        for key, _ in selector.select(0.1):
            received += len(key.fileobj.recv(1 << 20))  # type: ignore[union-attr]
    sent = int(command(child, "sent")) - sent_start
    cpu, elapsed = cpu_seconds(child.pid) - cpu_start, time.monotonic() - started
    command(child, "stop")
    child.wait(10)
    for sock in sockets:
        sock.close()
    target = args.streams * args.rate
    messages = sent / elapsed
    floor = floor_per_message(streams, 20_000)
    per_message = cpu / sent if sent else float("nan")
    print(f"streams {args.streams} x {args.rate:g} msg/s on {len(sockets)} connections")
    print(f"sent      {messages:,.0f} msg/s (target {target:,.0f}: {messages / target:.2f}x)")
    print(f"received  {received / elapsed / 1e6:.2f} MB/s")
    print(f"CPU       {cpu / elapsed:.0%} of one core")
    print(f"per msg   {per_message * 1e6:.1f} us CPU; floor (feed + JSON) {floor * 1e6:.1f} us")
    print(f"ratio     {per_message / floor:.2f}x the floor")


if __name__ == "__main__":
    main()
