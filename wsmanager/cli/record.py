"""``wsmanager record``: capture streams to JSON lines (:class:`~wsmanager.record.Recorder`)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

from ..config import BINANCE_WS_URL, redact_url
from ..manager import WSManager
from ..record import Recorder, _check_int, _check_positive
from .keys import add_key_arguments, key_options

__all__ = ["add_parser", "run"]

log = logging.getLogger("wsmanager")


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Add ``record`` to the ``wsmanager`` command's subparsers."""

    parser: argparse.ArgumentParser = subcommands.add_parser(
        "record", help="record STREAMs into gzip'ed JSON lines (replay: fake-exchange --replay)"
    )
    parser.add_argument("streams", nargs="+", metavar="STREAM")
    parser.add_argument(
        "-o", "--output", required=True, metavar="FILE", help="the recording, e.g. day.jsonl.gz"
    )
    parser.add_argument(
        "--url", default=BINANCE_WS_URL, help=f"base URL (default {BINANCE_WS_URL})"
    )
    add_key_arguments(parser)  # SBE: --encoding sbe --api-key-env NAME
    parser.add_argument(
        "--rotate-mb",
        type=float,
        default=None,
        metavar="N",
        help="start a new part every N MiB on disk (day.jsonl.gz, day.1.jsonl.gz, ...)",
    )
    parser.add_argument(
        "--seconds", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    parser.add_argument(
        "--count", type=int, default=None, metavar="N", help="stop after N messages"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing recording of that name"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """``wsmanager record``: 0 when done (count, seconds, SIGTERM), 130 on Ctrl-C, 1 when the
    recording failed, 2 on bad input."""
    rotate = None
    try:
        if args.rotate_mb is not None:
            _check_positive("--rotate-mb", args.rotate_mb)
            rotate = max(1, int(args.rotate_mb * (1 << 20)))
        if args.seconds is not None:
            _check_positive("--seconds", args.seconds)
        if args.count is not None:
            _check_int("--count", args.count)
        manager = WSManager(url=args.url, idle_timeout=None, **key_options(args))
    except ValueError as exc:
        print(f"wsmanager: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    with manager:
        try:
            recorder = Recorder(
                manager,
                args.streams,
                args.output,
                rotate_bytes=rotate,
                max_messages=args.count,
                overwrite=args.overwrite,
            )
        except (ValueError, OSError) as exc:
            print(f"wsmanager: {exc}", file=sys.stderr)
            return 2
        print(
            f"wsmanager: recording {len(recorder.streams)} stream(s) from "
            f"{redact_url(args.url)} into {args.output} (Ctrl-C ends)",
            file=sys.stderr,
            flush=True,
        )
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        with recorder:
            try:
                while not stop.is_set():
                    if recorder.wait(_until(deadline, 0.5)):
                        break
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    if len(recorder.ended) == len(recorder.streams):
                        break  # every stream failed or ended
            except KeyboardInterrupt:
                code = 130
    stats = recorder.stats()
    print(
        f"wsmanager: recorded {stats.messages} message(s), {stats.gaps} gap(s), "
        f"{stats.dropped} dropped, into {len(stats.parts)} part(s): "
        + " ".join(str(p) for p in stats.parts),
        file=sys.stderr,
    )
    for stream, reason in recorder.ended.items():
        print(f"wsmanager: {stream} ended: {reason}", file=sys.stderr)
    if recorder.error is not None:
        print(f"wsmanager: the recording failed: {recorder.error}", file=sys.stderr)
        return 1
    if code == 0 and recorder.ended and len(recorder.ended) == len(recorder.streams):
        return 1
    return code


def _until(deadline: float | None, most: float) -> float:
    if deadline is None:
        return most
    return max(0.0, min(most, deadline - time.monotonic()))
