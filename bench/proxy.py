"""What a proxy costs: opening a connection, and carrying a burst of messages.

Against the bundled fake exchange on loopback, three ways: direct, through Debian's tinyproxy
(HTTP CONNECT) and through microsocks (SOCKS5), each started here on a free port (a way whose
binary is missing is left out). Printed per way:

- ``open``: ``transport.open_socket`` (TCP, the proxy's handshake) plus the WebSocket upgrade,
  median and 95th percentile over ``--opens`` sequential opens, and the median's ratio to direct;
- ``burst``: ``--messages`` published as fast as the exchange can on one stream, the time until
  the subscriber has them all, as messages per second (the best of ``--repeat``) and as a ratio
  to direct. The fake exchange's ``publish`` is the ceiling here (a few thousand per second), so
  this shows whether a proxy lowers it, not what a proxy could carry.

Run: ``python bench/proxy.py [--opens 200] [--messages 20000]``.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

from wsmanager import WSManager
from wsmanager.net.transport import Deadline, open_socket
from wsmanager.testing import FakeExchange

STREAM = "btcusdt@trade"
OPEN_STREAM = "ethusdt@trade"  # the opens' own stream, so that none is counted in the burst
UPGRADE = (
    "GET /ws/{stream} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def process(args: list[str], port: int) -> Iterator[None]:
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.02)
        yield
    finally:
        child.terminate()
        child.wait(5)


@contextlib.contextmanager
def proxies(exchange_port: int, tmp: str) -> Iterator[dict[str, str | None]]:
    ways: dict[str, str | None] = {"direct": None}
    with contextlib.ExitStack() as stack:
        tinyproxy = shutil.which("tinyproxy")
        if tinyproxy:
            port = free_port()
            config = f"{tmp}/tinyproxy.conf"
            with open(config, "w") as handle:
                handle.write(
                    f"Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nMaxClients 100\n"
                    f"LogLevel Warning\nConnectPort {exchange_port}\n"
                )
            stack.enter_context(process([tinyproxy, "-d", "-c", config], port))
            ways["http (tinyproxy)"] = f"http://127.0.0.1:{port}"
        microsocks = shutil.which("microsocks")
        if microsocks:
            port = free_port()
            stack.enter_context(process([microsocks, "-i", "127.0.0.1", "-p", str(port)], port))
            ways["socks5 (microsocks)"] = f"socks5://127.0.0.1:{port}"
        yield ways


def open_once(exchange: FakeExchange, proxy: str | None) -> float:
    started = time.perf_counter()
    sock = open_socket(
        exchange.url + OPEN_STREAM,
        deadline=Deadline.after(5),
        stop=threading.Event(),
        publish=lambda s: None,
        proxy=proxy,
    )
    try:
        sock.sendall(UPGRADE.format(stream=OPEN_STREAM).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                raise RuntimeError("the exchange closed the connection")
            head += chunk
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(head[:80])
        return time.perf_counter() - started
    finally:
        sock.close()


def burst(exchange: FakeExchange, proxy: str | None, messages: int) -> float:
    got = 0
    done = threading.Event()

    def on_message(_: Any) -> None:
        nonlocal got
        got += 1
        if got >= messages:
            done.set()

    options: dict[str, Any] = {"streams_per_connection": 1, "connection_budget": None}
    with WSManager(url=exchange.url, proxy=proxy, max_buffered_messages=messages, **options) as m:
        m.subscribe(STREAM, on_message)
        if not exchange.wait_for_open(STREAM, 1, timeout=10):
            raise RuntimeError("no connection")
        started = time.perf_counter()
        for _ in range(messages):
            exchange.publish(STREAM)
        if not done.wait(60):
            raise RuntimeError(f"only {got} of {messages} messages arrived")
        return messages / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--opens", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="bursts per way (the best counts)")
    args = parser.parse_args()
    import tempfile

    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeExchange() as exchange,
        proxies(exchange.port, tmp) as ways,
    ):
        base_open = base_rate = 0.0
        header = f"{'way':<22}{'open p50':>10}{'open p95':>10}{'ratio':>7}"
        print(header + f"{'burst msg/s':>13}{'ratio':>7}")
        for name, proxy in ways.items():
            times = sorted(open_once(exchange, proxy) for _ in range(args.opens))
            p50 = statistics.median(times)
            p95 = times[int(len(times) * 0.95) - 1]
            rate = max(burst(exchange, proxy, args.messages) for _ in range(args.repeat))
            if proxy is None:
                base_open, base_rate = p50, rate
            print(
                f"{name:<22}{p50 * 1e3:>8.2f}ms{p95 * 1e3:>8.2f}ms{p50 / base_open:>7.2f}"
                f"{rate:>13,.0f}{rate / base_rate:>7.2f}"
            )


if __name__ == "__main__":
    main()
