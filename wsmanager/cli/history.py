"""``wsmanager history`` (a stream's history as JSON lines, or as a recording that
``wsmanager fake-exchange --replay`` plays) and the history options of ``wsmanager stream``
(``--since``: history, then live)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..config import BINANCE_WS_URL, redact_url
from ..history import HistoryError, parse_since
from ..history.api import iter_history
from ..manager import WSManager
from ..recording import RecordingWriter, encode_message

__all__ = ["add_parser", "add_source_options", "manager_options", "run", "since_option"]


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--rest-url``, ``--archive-url``, ``--no-archive``, ``--cache-dir``, ``--no-cache``."""
    parser.add_argument(
        "--rest-url", default=None, metavar="URL", help="REST API (default api.binance.com)"
    )
    parser.add_argument(
        "--archive-url",
        default=None,
        metavar="URL",
        help="public data archive (default https://data.binance.vision)",
    )
    parser.add_argument("--no-archive", action="store_true", help="REST only")
    parser.add_argument(
        "--cache-dir", default=None, metavar="DIR", help="archive cache (default: user cache)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not cache archive files")


def manager_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``WSManager`` options the source flags ask for."""
    options: dict[str, Any] = {}
    if args.rest_url is not None:
        options["rest_url"] = args.rest_url
    if args.no_archive:
        options["archive_url"] = None
    elif args.archive_url is not None:
        options["archive_url"] = args.archive_url
    if args.no_cache:
        options["cache_dir"] = None
    elif args.cache_dir is not None:
        options["cache_dir"] = args.cache_dir
    return options


def since_option(text: str) -> Any:
    """argparse ``type=`` for ``--since``/``--until``."""
    try:
        return parse_since(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Add ``history`` to the ``wsmanager`` command's subparsers."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        "history",
        help="a stream's history (@aggTrade, @kline_<interval>) as JSON lines or a recording",
    )
    parser.add_argument("stream", metavar="STREAM")
    parser.add_argument(
        "--since", required=True, type=since_option, help="6h, 2d, 2026-11-01, 2026-11-01T12:00Z"
    )
    parser.add_argument("--until", type=since_option, default=None, help="exclusive; default now")
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE",
        help="write a recording (e.g. trades.jsonl.gz) for fake-exchange --replay",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")
    parser.add_argument("--proxy", default=None, metavar="URL", help="proxy URL, or 'env'")
    parser.add_argument(
        "--progress",
        choices=("auto", "on", "off"),
        default="auto",
        help="a progress bar on stderr (auto: on a terminal)",
    )
    add_source_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """0: written; 1: a source failed; 2: bad input. Written batch by batch, as loaded."""
    try:
        manager = WSManager(url=BINANCE_WS_URL, proxy=args.proxy, **manager_options(args))
    except (TypeError, ValueError) as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return 2
    progress = {"auto": None, "on": True, "off": False}[args.progress]
    writer: RecordingWriter | None = None
    count = 0
    with manager:
        try:
            batches = iter_history(manager.config, args.stream, args.since, args.until, progress)
            if args.output is not None:
                writer = RecordingWriter(
                    args.output,
                    streams=[args.stream],
                    url=redact_url(manager.config.effective_rest_url),
                    overwrite=args.overwrite,
                )
        except (TypeError, ValueError, OSError) as exc:
            print(f"wsmanager: {exc}", file=sys.stderr)
            return 2
        try:
            for batch in batches:
                count += len(batch)
                if writer is None:
                    sys.stdout.write(
                        "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in batch)
                    )
                    continue
                for message in batch:  # timed by the message's own time, as if received then
                    writer.write(encode_message(message["E"] / 1000, args.stream, message))
        except HistoryError as exc:
            print(f"wsmanager: {exc}", file=sys.stderr)
            return 1
        finally:
            sys.stdout.flush()
            if writer is not None:
                writer.close()
    if writer is not None:
        print(f"wsmanager: {count} message(s) of {args.stream} in {args.output}", file=sys.stderr)
    return 0
