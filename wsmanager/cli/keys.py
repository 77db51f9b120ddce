"""Command-line options shared by the commands that read SBE market data: the API key, taken
from an environment variable only (never from the command line, where ``ps`` and shell history
would show it), and the encoding."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..config import ENCODINGS

__all__ = ["add_key_arguments", "key_options"]


def add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """``--api-key-env NAME`` and ``--encoding``."""
    parser.add_argument(
        "--api-key-env",
        default=None,
        metavar="NAME",
        help="read the API key (sent as X-MBX-APIKEY; needed by --endpoint spot-sbe) from the "
        "environment variable NAME",
    )
    parser.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=None,
        help="market data encoding (default: the endpoint's, else json)",
    )


def key_options(args: argparse.Namespace) -> dict[str, Any]:
    """``WSManager`` options from ``--api-key-env`` and ``--encoding`` (only those given).

    ``ValueError`` naming the variable (never its value) when it is unset or empty."""
    options: dict[str, Any] = {}
    if args.encoding is not None:
        options["encoding"] = args.encoding
    name = args.api_key_env
    if name is not None:
        key = os.environ.get(name, "")
        if not key:
            raise ValueError(f"--api-key-env {name}: the environment variable {name} is not set")
        options["api_key"] = key
    return options
