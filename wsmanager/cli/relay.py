"""``wsmanager relay``: relay exchange streams into Redis until stopped.

``add_parser(subcommands)`` adds the command to ``wsmanager``'s parser and ``run(args)`` runs it;
``python -m wsmanager relay ...`` runs it without the console script.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from ..config import BINANCE_WS_URL, redact_url

__all__ = ["add_parser", "read_streams_file", "run"]


def _configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("streams", nargs="*", metavar="STREAM", help="streams to relay")
    parser.add_argument(
        "--redis", required=True, metavar="URL", help="Redis URL, e.g. redis://HOST:6379/0"
    )
    parser.add_argument(
        "--url", default=BINANCE_WS_URL, help=f"exchange base URL ({BINANCE_WS_URL})"
    )
    parser.add_argument(
        "--streams-file",
        type=Path,
        metavar="FILE",
        help="more streams, one per line (# starts a comment)",
    )
    parser.add_argument(
        "--maxlen",
        type=int,
        default=100_000,
        metavar="N",
        help="entries kept per stream, ~ (100000)",
    )
    parser.add_argument(
        "--group", default="default", help="relays of one group elect one writer (default: default)"
    )
    parser.add_argument(
        "--lease-ttl", type=float, default=5.0, metavar="S", help="lease seconds (5)"
    )
    parser.add_argument(
        "--buffer",
        type=int,
        default=10_000,
        metavar="N",
        help="messages buffered per stream while Redis is away (10000)",
    )
    parser.add_argument(
        "--key-prefix", default="wsmanager:", metavar="P", help="Redis key prefix (wsmanager:)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="P",
        help="serve /api/ws/metrics on --metrics-host:P (0: any free port)",
    )
    parser.add_argument("--metrics-host", default="127.0.0.1", metavar="H", help="(127.0.0.1)")
    return parser


def add_parser(
    subcommands: argparse._SubParsersAction,  # type: ignore[type-arg]
) -> argparse.ArgumentParser:
    """Add ``relay`` to ``wsmanager``'s subcommands."""
    return _configure(
        subcommands.add_parser(
            "relay",
            help="relay exchange streams into Redis Streams (needs the relay extra)",
            description="Hold the exchange connections here and append every message to the "
            "Redis stream wsmanager:<STREAM>, for RelayClient readers anywhere.",
        )
    )


def read_streams_file(path: Path) -> list[str]:
    """Stream names in ``path``: one per line; blank lines and ``#`` comments ignored."""
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    """Relay until SIGTERM or Ctrl-C. 0: stopped; 1: failed to start; 2: bad input."""
    streams = list(args.streams)
    if args.streams_file is not None:
        try:
            streams += read_streams_file(args.streams_file)
        except OSError as exc:
            print(f"wsmanager relay: cannot read --streams-file: {exc}", file=sys.stderr)
            return 2
    if not streams:
        print("wsmanager relay: no streams given (STREAM... or --streams-file)", file=sys.stderr)
        return 2
    try:
        from ..monitoring import serve_metrics
        from ..relay.relay import Relay
    except ImportError:
        print("wsmanager relay needs redis-py: pip install 'wsmanager[relay]'", file=sys.stderr)
        return 1
    try:
        relay = Relay(
            args.redis,
            dict.fromkeys(streams),  # once each, in order
            url=args.url,
            maxlen=args.maxlen,
            group=args.group,
            lease_ttl=args.lease_ttl,
            buffer_size=args.buffer,
            key_prefix=args.key_prefix,
        )
    except (TypeError, ValueError) as exc:
        print(f"wsmanager relay: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with relay, contextlib.ExitStack() as stack:
        if args.metrics_port is not None:
            server = stack.enter_context(
                serve_metrics(relay, host=args.metrics_host, port=args.metrics_port)
            )
            print(f"wsmanager relay: metrics at {server.url}", file=sys.stderr, flush=True)
        print(
            f"wsmanager relay: {len(relay.streams)} stream(s) from {redact_url(args.url)} to "
            f"{relay.key_prefix}<stream>, group {args.group!r}",
            file=sys.stderr,
            flush=True,
        )
        role = None
        try:
            while not stop.wait(0.1):
                if relay.role is not role:
                    role = relay.role
                    print(f"wsmanager relay: {role.value}", file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            pass
    metrics = relay.get_metrics()
    print(
        f"wsmanager relay: stopped; {metrics.entries_written} entries written, "
        f"{metrics.dropped_entries} dropped",
        file=sys.stderr,
    )
    return 0
