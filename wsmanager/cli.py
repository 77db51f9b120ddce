"""The ``wsmanager`` command line: ``demo``, ``stream``, ``health``, ``fake-exchange``, ``relay``,
``book``, ``record``.

This is the only module that configures logging handlers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from . import record
from .book import cli as book_cli
from .config import BINANCE_WS_URL
from .endpoints import ENDPOINTS
from .manager import WSManager
from .monitoring import serve_metrics
from .relay import cli as relay_cli
from .view import LiveView

__all__ = ["main"]

DEFAULT_HEALTH_URL = "http://127.0.0.1:3000/api/ws/metrics"

DEMO_STREAMS = {  # stream -> subscribers
    "btcusdt@trade": 3,
    "ethusdt@trade": 2,
    "btcusdt@bookTicker": 2,
    "!miniTicker@arr": 1,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wsmanager", description="Shared, self-healing exchange WebSocket streams."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run a demo against the bundled fake exchange (no internet needed)"
    )
    demo.add_argument("--seconds", type=float, default=20.0, help="how long (default 20)")
    demo.add_argument("--rate", type=float, default=25.0, help="messages/s per stream")
    demo.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        metavar="P",
        help="serve /api/ws/metrics on 127.0.0.1:P (default 0: any free port)",
    )

    stream = commands.add_parser("stream", help="print each message of STREAM as a JSON line")
    stream.add_argument("streams", nargs="+", metavar="STREAM")
    stream.add_argument(
        "--url", default=None, help=f"base URL (default: the endpoint's, else {BINANCE_WS_URL})"
    )
    stream.add_argument(
        "--endpoint",
        choices=list(ENDPOINTS),
        default=None,
        help="an exchange endpoint preset: its URL and rules (see docs/endpoints.md)",
    )
    stream.add_argument(
        "--proxy",
        default=None,
        metavar="URL",
        help="http://, socks5:// or socks5h:// proxy URL, or 'env' (https_proxy/all_proxy)",
    )
    stream.add_argument("--count", type=int, default=None, help="stop after N messages")
    stream.add_argument(
        "--view",
        action="store_true",
        help="show a live view (connections, budget, rates, gaps) instead of the messages",
    )
    stream.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="also serve /api/ws/metrics on 127.0.0.1:P (0: any free port)",
    )

    health = commands.add_parser(
        "health", help="probe a metrics endpoint: exit 0 healthy, 1 unhealthy, 2 unreachable"
    )
    health.add_argument(
        "url",
        nargs="?",
        default=DEFAULT_HEALTH_URL,
        help=f"endpoint (default {DEFAULT_HEALTH_URL})",
    )
    health.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")

    fake = commands.add_parser("fake-exchange", help="run the bundled fake exchange")
    fake.add_argument("--port", type=int, default=9443, help="port on 127.0.0.1 (default 9443)")
    fake.add_argument(
        "--rate", type=float, default=None, help="messages/s per stream (10; with --replay 0)"
    )
    fake.add_argument(
        "--rules",
        choices=("none", "binance"),
        default="none",
        help="enforce Binance's published limits (default none: permissive)",
    )
    fake.add_argument("--seed", type=int, default=None, help="make the market deterministic")
    fake.add_argument(
        "--replay", action="append", metavar="FILE", help="publish a recording (wsmanager record)"
    )
    fake.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1)")
    fake.add_argument("--loop", action="store_true", help="replay again and again")

    relay_cli.add_parser(commands)  # needs redis-py only when run: wsmanager[relay]
    book_cli.add_parser(commands)
    record.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # websocket-client logs every handled disconnect as ERROR
        logging.getLogger("websocket").setLevel(logging.CRITICAL)
    try:
        if args.command == "demo":
            return _demo(args.seconds, args.rate, args.metrics_port)
        if args.command == "stream":
            return _stream(
                args.streams,
                args.url,
                args.count,
                args.metrics_port,
                args.view,
                args.endpoint,
                args.proxy,
            )
        if args.command == "health":
            return probe_health(args.url, args.timeout)
        if args.command == "relay":
            return relay_cli.run(args)
        if args.command == "book":
            return book_cli.run(args)
        if args.command == "record":
            return record.run(args)
        return _fake_exchange(args)
    except KeyboardInterrupt:
        return 130


# -- stream ------------------------------------------------------------------------------------


def _stream(
    streams: list[str],
    url: str | None,
    count: int | None,
    metrics_port: int | None,
    view: bool = False,
    endpoint: str | None = None,
    proxy: str | None = None,
) -> int:
    done = threading.Event()
    printed = 0
    lock = threading.Lock()
    failure: list[BaseException] = []

    def on_message(message: Any) -> None:
        nonlocal printed
        with lock:
            if count is not None and printed >= count:
                return
            if not view:
                sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")
                sys.stdout.flush()
            printed += 1
            if count is not None and printed >= count:
                done.set()

    def on_error(error: BaseException) -> None:
        failure.append(error)
        done.set()

    try:
        if url is None and endpoint is None:
            url = BINANCE_WS_URL
        manager = WSManager(url=url, endpoint=endpoint, proxy=proxy)
    except ValueError as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return 2
    with manager, contextlib.ExitStack() as stack:
        if metrics_port is not None:
            server = stack.enter_context(serve_metrics(manager, port=metrics_port))
            print(f"wsmanager: metrics at {server.url}", file=sys.stderr)
        try:
            for name in streams:
                manager.subscribe(name, on_message, on_error=on_error)
        except ValueError as exc:
            print(f"wsmanager: {exc}", file=sys.stderr)
            return 2
        live = LiveView(manager) if view else None
        try:
            while not done.wait(1.0 if live else 0.5):
                if live is not None:
                    live.tick()
        except KeyboardInterrupt:
            print(f"\nwsmanager: stopped after {printed} message(s)", file=sys.stderr)
            return 130
    if failure:
        print(f"wsmanager: {failure[0]}", file=sys.stderr)
        return 1
    return 0


# -- health ------------------------------------------------------------------------------------


def probe_health(url: str, timeout: float = 5.0) -> int:
    """0: healthy; 1: unhealthy (reasons printed); 2: unreachable or not a wsmanager answer."""
    try:
        import requests
    except ImportError:
        print("wsmanager health needs requests: pip install 'wsmanager[cli]'", file=sys.stderr)
        return 2
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        print(f"unreachable: {url}: {exc}", file=sys.stderr)
        return 2
    try:
        document = response.json()
        status = document["status"]
        reasons = document.get("reasons", [])
    except (ValueError, KeyError, TypeError):
        print(f"malformed answer from {url} (HTTP {response.status_code})", file=sys.stderr)
        return 2
    if status == "healthy" and response.status_code == 200:
        print(f"healthy ({url})")
        return 0
    if status == "unhealthy" and response.status_code == 503:
        print(f"unhealthy ({url}):")
        for reason in reasons:
            print(f"  - {reason}")
        return 1
    print(
        f"malformed answer from {url}: status {status!r} with HTTP {response.status_code}",
        file=sys.stderr,
    )
    return 2


# -- fake-exchange -------------------------------------------------------------------------------


def _fake_exchange(args: argparse.Namespace) -> int:
    from .testing import BINANCE_SPOT_RULES, FakeExchange
    from .testing.replay import replay_for_clients

    port, rules, seed = args.port, args.rules, args.seed
    rate = args.rate if args.rate is not None else 0.0 if args.replay else 10.0
    chosen = BINANCE_SPOT_RULES if rules == "binance" else None
    with FakeExchange(port=port, rate=rate, rules=chosen, seed=seed) as exchange:
        print(
            f"fake exchange listening on {exchange.url} ({rate:g} msg/s per stream; "
            f"rules: {rules}; REST: {exchange.rest_url})",
            flush=True,
        )
        print(f"try: wsmanager stream btcusdt@trade --url {exchange.url}   (Ctrl-C ends)")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            if args.replay and not replay_for_clients(
                exchange, args.replay, speed=args.speed, loop=args.loop, stop=stop
            ):
                return 1
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        if chosen is not None:
            print(f"violations recorded: {len(exchange.violations())}")
    return 0


# -- demo ----------------------------------------------------------------------------------------


def _demo(seconds: float, rate: float, metrics_port: int) -> int:
    from .testing import FakeExchange

    with (
        FakeExchange(rate=rate) as exchange,
        WSManager(
            url=exchange.url,
            base_retry_delay=0.2,
            max_retry_delay=2.0,
            ping_interval=5.0,
            ping_timeout=2.0,
        ) as manager,
        serve_metrics(manager, port=metrics_port) as server,
    ):
        delivered = {name: 0 for name in DEMO_STREAMS}
        counts_lock = threading.Lock()

        def counter(name: str) -> Any:
            def on_message(message: Any) -> None:
                with counts_lock:
                    delivered[name] += 1

            return on_message

        subscribers = 0
        for name, count in DEMO_STREAMS.items():
            for _ in range(count):
                manager.subscribe(name, counter(name))
                subscribers += 1
        print(
            f"fake exchange at {exchange.url}; {subscribers} subscribers on "
            f"{len(DEMO_STREAMS)} streams, {rate:g} msg/s each; running {seconds:g}s"
        )
        print(f"metrics and health: curl {server.url}  (add ?format=prometheus for Prometheus)")
        view = LiveView(manager)
        started = time.monotonic()
        drop_at = started + seconds * 0.4
        dropped = False
        try:
            while (now := time.monotonic()) < started + seconds:
                time.sleep(min(1.0, started + seconds - now))  # the view's refresh period
                if not dropped and time.monotonic() >= drop_at:
                    n = exchange.drop()
                    dropped = True
                    note = f"*** fault injected: the exchange dropped {n} connection(s) ***"
                    view.notes.append(note)
                    if not view.interactive:
                        print(note)
                view.tick()
        except KeyboardInterrupt:
            print("\ninterrupted")
        metrics = manager.get_metrics()
        endpoint = _fetch_json(server.url)
        opened = max(exchange.stats(n).accepted for n in DEMO_STREAMS)
        with counts_lock:
            total_delivered = sum(delivered.values())
    print("\n== summary ==")
    print(f"subscribers: {subscribers}; streams: {len(DEMO_STREAMS)}")
    print(
        f"connections open at once: {metrics.active_connections_hwm} for {len(DEMO_STREAMS)} "
        f"streams (one per subscriber would be {subscribers}: sharing saved "
        f"{1 - metrics.active_connections_hwm / subscribers:.0%})"
    )
    print(f"connections opened in all (incl. reconnects): {opened}")
    print(f"reconnect attempts after the injected drop: {metrics.retry_count}")
    print(
        f"messages received: {metrics.messages_received}; delivered to callbacks: "
        f"{total_delivered}; invalid: {metrics.invalid_messages}; "
        f"dropped by slow callbacks: {metrics.dropped_messages}"
    )
    print(
        f"GET {server.url} during the run: HTTP {endpoint[0]}, status {endpoint[1]!r}, "
        f"activeConnections {endpoint[2]}"
    )
    return 0


def _fetch_json(url: str) -> tuple[int, str, object]:
    """(HTTP status, health status, activeConnections) from our own endpoint, over real HTTP."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    except OSError as exc:
        return 0, f"unreachable: {exc}", None
    document = json.loads(body)
    return status, document["status"], document["metrics"]["activeConnections"]
