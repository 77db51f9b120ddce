"""``wsmanager user-data``: print an account's user data events as JSON lines.

The API key and the HMAC secret come from environment variables named on the command line, an
Ed25519 or RSA private key from a PEM file: a secret never appears in the command line (where
``ps`` and shell histories would show it), and never in what the command prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

from ..core.state import Gap
from ..endpoints import ENDPOINTS
from ..manager import WSManager

__all__ = ["add_parser", "run"]


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Add the ``user-data`` command to an ``argparse`` subparsers object."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "user-data",
        help="print the user data events of an account as JSON lines (WebSocket API)",
        description="Subscribe to an account's user data stream through the WebSocket API and "
        "print each event as a JSON line. Secrets come from the environment or a file.",
        allow_abbrev=False,  # "--secret abc" must not pass for "--secret-env abc"
    )
    parser.add_argument(
        "--api-key-env", required=True, metavar="NAME", help="environment variable with the API key"
    )
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--secret-env", metavar="NAME", help="environment variable with the HMAC secret"
    )
    secret.add_argument(
        "--private-key", metavar="FILE", help="PEM file with an Ed25519 or RSA private key"
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", default=None, help="the WebSocket API URL (ws:// or wss://)")
    where.add_argument(
        "--endpoint",
        choices=[name for name, e in ENDPOINTS.items() if e.ws_api_url],
        default=None,
        help="an endpoint preset with a WebSocket API (default: spot)",
    )
    parser.add_argument("--count", type=int, default=None, help="stop after N events")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    return parser


def _env(name: str, what: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ValueError(f"the environment variable {name} (the {what}) is not set or empty")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        api_key = _env(args.api_key_env, "API key")
        api_secret = _env(args.secret_env, "API secret") if args.secret_env else None
    except ValueError as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return 2
    done = threading.Event()
    lock = threading.Lock()
    printed = 0
    failure: list[BaseException] = []

    def on_event(event: Any) -> None:
        nonlocal printed
        with lock:
            if args.count is not None and printed >= args.count:
                return
            sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            printed += 1
            if args.count is not None and printed >= args.count:
                done.set()

    def on_error(error: BaseException) -> None:
        failure.append(error)
        done.set()

    def on_gap(gap: Gap) -> None:
        print(
            f"wsmanager: user data subscription made again; events from {gap.expected} to "
            f"{gap.received} (exchange time, ms) may be missing: check them with the REST API",
            file=sys.stderr,
        )

    manager = WSManager(endpoint=args.endpoint or "spot")
    with manager:
        manager.on_gap(on_gap)
        try:
            manager.user_data(
                on_event,
                api_key=api_key,
                api_secret=api_secret,
                private_key=args.private_key,
                on_error=on_error,
                ws_api_url=args.url,
            )
        except (ValueError, TypeError, ImportError) as exc:
            print(f"wsmanager: {exc}", file=sys.stderr)
            return 2
        try:
            done.wait(args.seconds)
        except KeyboardInterrupt:
            print(f"\nwsmanager: stopped after {printed} event(s)", file=sys.stderr)
            return 130
    if failure:
        print(f"wsmanager: {failure[0]}", file=sys.stderr)
        return 1
    return 0
