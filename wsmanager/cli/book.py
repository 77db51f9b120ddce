"""``wsmanager book SYMBOL``: a live top of book in the terminal.

By default against the bundled fake exchange, started in-process (no internet needed); with
``--url`` (and ``--rest-url``) against a real exchange; with ``--endpoint`` against that preset's
addresses. A futures preset (``--endpoint usdm``) follows the futures procedure (events chained
by ``pu``, snapshots from ``/fapi/v1/depth``); ``--endpoint usdm --fake`` shows it on the bundled
exchange in its USD-M mode.
Redrawn in place when stdout is a terminal, a block of plain lines per refresh otherwise. The
lead wires :func:`add_parser` and :func:`run` into ``wsmanager.cli``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from ..book.orderbook import BookView, OrderBook
from ..endpoints import ENDPOINTS, get_endpoint
from ..manager import WSManager
from ..sbe.streams import book_speed
from .keys import add_key_arguments, key_options

__all__ = ["add_parser", "render", "run"]

BINANCE_REST_URL = "https://api.binance.com"
_BINANCE_STREAM_HOSTS = ("stream.binance.com", "data-stream.binance.vision")


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Add the ``book`` command to an ``argparse`` subparsers object; returns its parser."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "book",
        help="show a live top of book for SYMBOL (the bundled fake exchange by default)",
        description="Keep a local order book of SYMBOL in sync and show its top levels.",
    )
    parser.add_argument("symbol", metavar="SYMBOL", help="e.g. BTCUSDT")
    parser.add_argument("--levels", type=int, default=10, metavar="N", help="levels per side")
    parser.add_argument(
        "--url",
        default=None,
        help="WebSocket base URL, e.g. wss://stream.binance.com:9443/ws/ "
        "(default: the bundled fake exchange, started in-process)",
    )
    parser.add_argument(
        "--rest-url",
        default=None,
        help=f"REST base URL (default: {BINANCE_REST_URL} for Binance's stream hosts)",
    )
    parser.add_argument(
        "--endpoint",
        choices=list(ENDPOINTS),
        default=None,
        help="an exchange endpoint preset: its URLs and rules (spot-sbe: SBE, 20 ms depth)",
    )
    add_key_arguments(parser)
    parser.add_argument("--limit", type=int, default=1000, help="snapshot depth (1..5000)")
    parser.add_argument(
        "--speed",
        choices=("100ms", "1000ms", "20ms", "250ms", "500ms"),
        default=None,
        help="diff depth speed (default 100ms; SBE: 20ms, its only one; futures: 100ms, 250ms "
        "or 500ms)",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between redraws")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    parser.add_argument(
        "--rate", type=float, default=10.0, help="the fake exchange's updates per second"
    )
    parser.add_argument(
        "--fake",
        action="store_true",
        help="with --endpoint: the bundled fake exchange in that preset's market "
        "(e.g. --endpoint usdm --fake: USD-M routes, a futures book)",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the command: 0 when stopped by ``--seconds``, 1 when the book failed for good,
    2 for bad arguments, 130 on Ctrl-C."""
    if args.levels < 1 or args.interval <= 0:
        print("wsmanager book: --levels and --interval must be positive", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        try:
            options = key_options(args)
            url, rest_url = _endpoints(args, stack)
            manager = stack.enter_context(WSManager(url=url, endpoint=args.endpoint, **options))
            endpoint = None if args.endpoint is None else get_endpoint(args.endpoint)
            market = "spot" if endpoint is None else endpoint.market
            speed = book_speed(manager.config.encoding, args.speed)
            book = stack.enter_context(  # the preset's procedure and REST path (futures: /fapi)
                manager.order_book(args.symbol, rest_url, limit=args.limit, speed=speed)
                if market != "spot"
                else OrderBook(
                    manager.subscribe,
                    args.symbol,
                    rest_url=rest_url,
                    limit=args.limit,
                    speed=speed,
                )
            )
        except (ValueError, RuntimeError) as exc:
            print(f"wsmanager book: {exc}", file=sys.stderr)
            return 2
        try:
            return _show(book, args, sys.stdout.isatty())
        except KeyboardInterrupt:
            return 130


def _endpoints(args: argparse.Namespace, stack: contextlib.ExitStack) -> tuple[str | None, str]:
    endpoint = None if args.endpoint is None else get_endpoint(args.endpoint)
    if endpoint is not None and not args.fake:
        # the preset's addresses, unless --url/--rest-url say others
        return args.url, args.rest_url or endpoint.rest_url
    if args.url is None:
        from ..testing import FakeExchange

        market = "spot" if endpoint is None else endpoint.market
        exchange = stack.enter_context(FakeExchange(rate=args.rate, market=market))
        rest_url = exchange.rest_url
        url = exchange.url
        if endpoint is not None and endpoint.routed:
            url = exchange.root_url
        elif endpoint is not None and endpoint.routes:
            url = exchange.route_url(endpoint.routes[0])
        print(f"fake exchange at {url} (REST {rest_url}; market {market})", file=sys.stderr)
        return url, args.rest_url or rest_url
    if args.rest_url is not None:
        return args.url, args.rest_url
    if urlsplit(args.url).hostname in _BINANCE_STREAM_HOSTS:
        return args.url, BINANCE_REST_URL
    raise ValueError("--rest-url is needed with a --url that is not Binance's")


def _show(book: OrderBook, args: argparse.Namespace, interactive: bool) -> int:
    tick = threading.Event()  # never set: an interruptible wait between redraws
    started = time.monotonic()
    deadline = None if args.seconds is None else started + args.seconds
    while True:
        now = time.monotonic()
        wait = args.interval if deadline is None else min(args.interval, deadline - now)
        if wait > 0:
            tick.wait(wait)
        stats = book.stats()
        text = render(book.symbol, book.view(args.levels), stats.resyncs, args.levels)
        if interactive:
            sys.stdout.write("\x1b[H\x1b[J")  # home, clear to the end: redraw in place
        sys.stdout.write(f"t={time.monotonic() - started:.1f}s  {text}\n")
        sys.stdout.flush()
        if book.error is not None:
            print(f"wsmanager book: {book.error}", file=sys.stderr)
            return 1
        if deadline is not None and time.monotonic() >= deadline:
            return 0


def render(symbol: str, view: BookView, resyncs: int, levels: int) -> str:
    """The text of one redraw: a header, then ``levels`` rows of bids beside asks."""
    if not view.synced:
        return f"{symbol}  not synced (syncing)  resyncs {resyncs}"
    header = f"{symbol}  synced at update {view.last_update_id}  resyncs {resyncs}"
    if view.bids and view.asks:
        spread = view.asks[0][0] - view.bids[0][0]
        mid = (view.asks[0][0] + view.bids[0][0]) / 2
        header += f"  spread {_plain(spread)} ({spread / mid * 100:.4f} %)"
    rows = [header, f"{'bid qty':>18} {'bid price':>16} | {'ask price':<16} {'ask qty':<18}"]
    for i in range(levels):
        bid = view.bids[i] if i < len(view.bids) else None
        ask = view.asks[i] if i < len(view.asks) else None
        left = f"{_plain(bid[1]):>18} {_plain(bid[0]):>16}" if bid else " " * 35
        right = f"{_plain(ask[0]):<16} {_plain(ask[1]):<18}" if ask else ""
        rows.append(f"{left} | {right}".rstrip())
    return "\n".join(rows)


def _plain(number: Decimal) -> str:
    """A Decimal without exponent, as the exchange writes it."""
    return f"{number:f}"
