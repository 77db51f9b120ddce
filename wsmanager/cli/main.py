"""The ``wsmanager`` command line: ``demo``, ``stream``, ``health``, ``fake-exchange``, ``relay``,
``book``, ``record``, ``user-data``, ``history``.

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
from collections.abc import Callable, Sequence
from typing import Any

from .._redact import redact_text
from ..config import BINANCE_WS_URL, redact_url
from ..endpoints import ENDPOINTS
from ..manager import WSManager
from ..monitoring import serve_metrics
from . import book as book_cli
from . import history as history_cli
from . import record
from . import relay as relay_cli
from . import user_data as user_data_cli
from .demo import run_demo
from .demo_futures import run_futures_demo
from .keys import add_key_arguments, key_options
from .view import LiveView

__all__ = ["main"]

DEFAULT_HEALTH_URL = "http://127.0.0.1:3000/api/ws/metrics"


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
        "--futures",
        action="store_true",
        help="the USD-M scenario: routed streams and a futures order book on one manager",
    )
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
    add_key_arguments(stream)
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
    stream.add_argument(
        "--since",
        type=history_cli.since_option,
        default=None,
        help="history first (6h, 2d, 2026-11-01), then live: @aggTrade, @kline_<interval>",
    )
    history_cli.add_source_options(stream)

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
        "--market",
        choices=("spot", "usdm", "coinm"),
        default="spot",
        help="spot (default), or a futures market: usdm (routed /public, /market) or coinm",
    )
    fake.add_argument(
        "--encoding",
        choices=("json", "sbe"),
        default="json",
        help="sbe: serve @trade, @bestBidAsk, @depth, @depth20 as SBE (an API key needed)",
    )
    fake.add_argument(
        "--replay", action="append", metavar="FILE", help="publish a recording (wsmanager record)"
    )
    fake.add_argument("--speed", type=float, default=1.0, help="replay speed (default 1)")
    fake.add_argument("--loop", action="store_true", help="replay again and again")

    relay_cli.add_parser(commands)  # needs redis-py only when run: wsmanager[relay]
    book_cli.add_parser(commands)
    record.add_parser(commands)
    user_data_cli.add_parser(commands)  # needs cryptography for Ed25519/RSA: wsmanager[userdata]
    history_cli.add_parser(commands)
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
        if args.command == "demo":  # the live view shows what the warnings would say
            logging.getLogger("wsmanager").setLevel(logging.ERROR)
    restore = _end_cleanly_on_signals()
    try:
        if args.command == "demo":
            if args.futures:
                return run_futures_demo(args.seconds, args.rate)
            return run_demo(args.seconds, args.rate, args.metrics_port)
        if args.command == "stream":
            return _stream(
                args.streams,
                args.url,
                args.count,
                args.metrics_port,
                args.view,
                args.endpoint,
                args.proxy,
                args,
                since=args.since,
                history_options=history_cli.manager_options(args),
            )
        if args.command == "health":
            return probe_health(args.url, args.timeout)
        if args.command == "relay":
            return relay_cli.run(args)
        if args.command == "book":
            return book_cli.run(args)
        if args.command == "record":
            return record.run(args)
        if args.command == "user-data":
            return user_data_cli.run(args)
        if args.command == "history":
            return history_cli.run(args)
        return _fake_exchange(args)
    except KeyboardInterrupt:
        return 130
    finally:
        restore()


def _end_cleanly_on_signals() -> Callable[[], None]:
    """SIGTERM (``timeout``, a service manager) and SIGHUP (the terminal closed) end a command
    the way Ctrl-C does: ``KeyboardInterrupt`` in the main thread, so every ``with`` block
    closes what it opened — the demo's redis-server included. (Commands that wait on an event
    may still set their own SIGTERM handler.) Returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous: dict[signal.Signals, Any] = {}
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, interrupt)

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


# -- stream ------------------------------------------------------------------------------------


def _stream(
    streams: list[str],
    url: str | None,
    count: int | None,
    metrics_port: int | None,
    view: bool = False,
    endpoint: str | None = None,
    proxy: str | None = None,
    args: argparse.Namespace | None = None,
    since: Any = None,
    history_options: dict[str, Any] | None = None,
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
        options = key_options(args) if args is not None else {}
        options.update(history_options or {})
        manager = WSManager(url=url, endpoint=endpoint, proxy=proxy, **options)
    except ValueError as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return 2
    with manager, contextlib.ExitStack() as stack:
        if metrics_port is not None:
            server = stack.enter_context(serve_metrics(manager, port=metrics_port))
            print(f"wsmanager: metrics at {server.url}", file=sys.stderr)
        try:
            for name in streams:
                manager.subscribe(name, on_message, on_error=on_error, since=since)
        except (TypeError, ValueError) as exc:
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
    shown = redact_url(url)  # what is printed: never the credentials
    try:
        response = requests.get(url, timeout=timeout)
    except requests.RequestException as exc:
        print(f"unreachable: {shown}: {redact_text(str(exc), url)}", file=sys.stderr)
        return 2
    try:
        document = response.json()
        status = document["status"]
        reasons = document.get("reasons", [])
    except (ValueError, KeyError, TypeError):
        print(f"malformed answer from {shown} (HTTP {response.status_code})", file=sys.stderr)
        return 2
    if status == "healthy" and response.status_code == 200:
        print(f"healthy ({shown})")
        return 0
    if status == "unhealthy" and response.status_code == 503:
        print(f"unhealthy ({shown}):")
        for reason in reasons:
            print(f"  - {reason}")
        return 1
    print(
        f"malformed answer from {shown}: status {status!r} with HTTP {response.status_code}",
        file=sys.stderr,
    )
    return 2


# -- fake-exchange -------------------------------------------------------------------------------


def _fake_exchange(args: argparse.Namespace) -> int:
    from ..testing import BINANCE_SPOT_RULES, FakeExchange
    from ..testing.replay import replay_for_clients

    port, rules, seed = args.port, args.rules, args.seed
    rate = args.rate if args.rate is not None else 0.0 if args.replay else 10.0
    chosen = BINANCE_SPOT_RULES if rules == "binance" else None
    market = args.market
    sbe = args.encoding == "sbe"
    with FakeExchange(
        port=port, rate=rate, rules=chosen, seed=seed, market=market, encoding=args.encoding
    ) as exchange:
        print(
            f"fake exchange listening on {exchange.url} ({rate:g} msg/s per stream; "
            f"rules: {rules}; market: {market}; REST: {exchange.rest_url}; "
            f"encoding: {args.encoding})",
            flush=True,
        )
        if market == "usdm":
            print(
                f"try: wsmanager book BTCUSDT --endpoint usdm --url {exchange.root_url} "
                f"--rest-url {exchange.rest_url}   (Ctrl-C ends)"
            )
        else:
            extra = " --encoding sbe --api-key-env BINANCE_API_KEY" if sbe else ""
            print(f"try: wsmanager stream btcusdt@trade --url {exchange.url}{extra}  (Ctrl-C ends)")
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
