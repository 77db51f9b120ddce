"""One benchmark case per process: ``python bench/cases.py CASE CLIENT PORT [ARG]`` prints JSON.

Clients: wsmanager, wsmanager-public (wsmanager on websocket-client's public frame reader),
wsapp (websocket-client WebSocketApp, defaults), websockets-sync, websockets-asyncio,
binance-connector, python-binance. Every client json-decodes each message, as a user would.

wsmanager runs with ``streams_per_connection=1`` here: one raw connection per stream, as every
peer in this table opens (bench/streams.py measures many streams per connection), and otherwise
its default options; ``wsmanager-buffered`` is the extra row with buffers raised to 1e6 messages
(like python-binance's queue).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


class Counter:
    """Counts messages across threads and signals when ``target`` arrived."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.latencies: list[int] = []

    def hit(self, message: Any) -> None:
        now = time.perf_counter()
        with self.lock:
            if self.count == 0:
                self.first = now
            self.count += 1
            if self.count >= self.target:
                self.last = now
                self.done.set()

    def stamp(self, message: Any) -> None:
        self.latencies.append(time.monotonic_ns() - message["E"])
        self.hit(message)


# -- clients: run(urls, on_message, counter) blocks until counter.done ---------------------------


def run_wsmanager(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
    **options: Any,
) -> None:
    """wsmanager with its default options (one raw connection per stream, as every peer)."""
    from wsmanager import WSManager

    with WSManager(
        url=base,
        max_retry_attempts=None,
        base_retry_delay=0.05,
        streams_per_connection=1,
        **options,
    ) as manager:
        for stream in streams:
            manager.subscribe(stream, on_message)
            for _ in range(subscribers - 1):  # fan-out: the others do nothing
                manager.subscribe(stream, lambda message: None)
        counter.done.wait(600)


def run_wsmanager_buffered(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    """The extra, labelled row: buffers raised to 1e6 messages (as the earlier rows were)."""
    run_wsmanager(
        base,
        streams,
        on_message,
        counter,
        subscribers,
        max_buffered_messages=1_000_000,
        max_buffered_bytes=1 << 30,
    )


def run_wsmanager_public(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    """wsmanager with websocket-client's public frame reader (what the private patches buy)."""
    from wsmanager.net import _wsclient

    _wsclient.FAST_READER_AVAILABLE = False
    run_wsmanager(base, streams, on_message, counter, subscribers)


def run_wsapp(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    import websocket

    apps = [
        websocket.WebSocketApp(base + s, on_message=lambda ws, m: on_message(json.loads(m)))
        for s in streams
    ]
    threads = [threading.Thread(target=a.run_forever, daemon=True) for a in apps]
    for thread in threads:
        thread.start()
    counter.done.wait(600)
    for app in apps:
        app.close()


def run_websockets_sync(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    from websockets.sync.client import connect

    def read(url: str) -> None:
        with connect(url, max_size=None, compression=None) as ws:
            for raw in ws:
                on_message(json.loads(raw))
                if counter.done.is_set():
                    return

    threads = [threading.Thread(target=read, args=(base + s,), daemon=True) for s in streams]
    for thread in threads:
        thread.start()
    counter.done.wait(600)


def run_websockets_asyncio(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    from websockets.asyncio.client import connect

    async def read(url: str) -> None:
        async with connect(url, max_size=None, compression=None) as ws:
            async for raw in ws:
                on_message(json.loads(raw))
                if counter.done.is_set():
                    return

    _run_until_done([read(base + s) for s in streams], counter)


def run_binance_connector(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    from binance.websocket.websocket_client import BinanceWebsocketClient

    clients = [
        BinanceWebsocketClient(base + s, on_message=lambda _, m: on_message(json.loads(m)))
        for s in streams
    ]
    counter.done.wait(600)
    for client in clients:
        client.stop()


def run_python_binance(
    base: str,
    streams: list[str],
    on_message: Callable[[Any], None],
    counter: Counter,
    subscribers: int = 1,
) -> None:
    from binance.ws.reconnecting_websocket import ReconnectingWebsocket

    async def read(stream: str) -> None:
        root = base.removesuffix("ws/")  # python-binance joins url + "ws/" + path
        socket = ReconnectingWebsocket(url=root, path=stream, max_queue_size=1_000_000)
        async with socket as ws:
            while not counter.done.is_set():
                on_message(await ws.recv())  # already json-decoded by python-binance

    _run_until_done([read(s) for s in streams], counter)


def _run_until_done(readers: list[Any], counter: Counter) -> None:
    """Run asyncio readers until the counter is done, then cancel them."""

    async def main() -> None:
        tasks = [asyncio.create_task(reader) for reader in readers]
        while not counter.done.is_set():
            await asyncio.sleep(0.01)  # polling the thread-safe Event from the loop
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


CLIENTS = {
    "wsmanager": run_wsmanager,
    "wsmanager-buffered": run_wsmanager_buffered,
    "wsmanager-public": run_wsmanager_public,
    "wsapp": run_wsapp,
    "websockets-sync": run_websockets_sync,
    "websockets-asyncio": run_websockets_asyncio,
    "binance-connector": run_binance_connector,
    "python-binance": run_python_binance,
}


# -- cases ---------------------------------------------------------------------------------------


def throughput(
    client: str, port: int, streams: int, per_stream: int, subscribers: int = 1
) -> dict[str, Any]:
    counter = Counter(streams * per_stream)
    names = [f"burst-{per_stream}@s{i}" for i in range(streams)]
    thread = threading.Thread(
        target=CLIENTS[client],
        daemon=True,
        args=(f"ws://127.0.0.1:{port}/ws/", names, counter.hit, counter, subscribers),
    )
    thread.start()
    if not counter.done.wait(300):
        return {"error": f"timed out after {counter.count} messages"}
    thread.join(30)
    return {"msg_per_s": counter.count / (counter.last - counter.first)}


def latency(client: str, port: int, rate: int, count: int) -> dict[str, Any]:
    counter = Counter(count)
    thread = threading.Thread(
        target=CLIENTS[client],
        daemon=True,
        args=(f"ws://127.0.0.1:{port}/ws/", [f"rate-{rate}-{count}@x"], counter.stamp, counter),
    )
    thread.start()
    if not counter.done.wait(120):
        return {"error": "timed out"}
    thread.join(30)
    samples = sorted(counter.latencies[count // 10 :])  # skip the warm-up tenth
    return {
        "p50_us": samples[len(samples) // 2] / 1000,
        "p99_us": samples[int(len(samples) * 0.99)] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


def idle_rss(client: str, port: int, streams: int) -> dict[str, Any]:
    import websocket

    before = _rss_kib()
    names = [f"idle@s{i}" for i in range(streams)]
    if client == "wsmanager":
        from wsmanager import WSManager

        manager = WSManager(url=f"ws://127.0.0.1:{port}/ws/", streams_per_connection=1)
        for name in names:
            manager.subscribe(name, lambda m: None)
        while manager.get_metrics().active_connections < streams:
            time.sleep(0.05)
        time.sleep(1.0)
        after = _rss_kib()
        threads = threading.active_count()
        manager.destroy()
    else:
        apps = [websocket.WebSocketApp(f"ws://127.0.0.1:{port}/ws/{n}") for n in names]
        for app in apps:
            threading.Thread(
                target=app.run_forever,
                kwargs={"ping_interval": 20, "ping_timeout": 10},
                daemon=True,
            ).start()
        while sum(1 for a in apps if a.sock and a.sock.connected) < streams:
            time.sleep(0.05)
        time.sleep(1.0)
        after = _rss_kib()
        threads = threading.active_count()
        for app in apps:
            app.close()
    return {"kib_per_stream": (after - before) / streams, "threads": threads}


def recovery(client: str, port: int, base_retry_delay: float) -> dict[str, Any]:
    from wsmanager import WSManager

    arrivals: list[float] = []
    done = threading.Event()

    def on_message(message: Any) -> None:
        arrivals.append(time.perf_counter())
        if len(arrivals) > 1000 and message["t"] >= 10:
            done.set()

    results = []
    for attempt in range(5):
        arrivals.clear()
        done.clear()
        with WSManager(
            url=f"ws://127.0.0.1:{port}/ws/",
            base_retry_delay=base_retry_delay,
            max_retry_delay=30.0,
            streams_per_connection=1,
        ) as manager:
            manager.subscribe(f"drop-1000@r{os.getpid()}-{base_retry_delay}-{attempt}", on_message)
            done.wait(60)
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        results.append(max(gaps))
    return {"median_s": statistics.median(results), "samples_s": results}


def main() -> None:
    case, client, port, *rest = sys.argv[1:]
    args = [float(a) if "." in a else int(a) for a in rest]
    result = {
        "throughput": throughput,
        "latency": latency,
        "idle_rss": idle_rss,
        "recovery": recovery,
    }[case](client, int(port), *args)  # type: ignore[operator]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
