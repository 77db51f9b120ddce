"""``python -m wsmanager.relay --redis URL STREAM...``: the same as ``wsmanager relay``."""

from __future__ import annotations

import sys

from ..cli import main

sys.exit(main(["relay", *sys.argv[1:]]))
