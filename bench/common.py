"""What the benchmark drivers share: a case in a fresh process, and the median of its runs."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["median", "run_case"]


def run_case(script: Path | str, *args: object, timeout: float = 600) -> dict[str, Any]:
    """Run ``script`` with ``args`` in a fresh Python process; its last stdout line is a JSON
    object of figures, or the result is ``{"error": <its last stderr line>}``."""
    out = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    try:
        return dict(json.loads(out.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return {"error": (out.stderr.strip().splitlines() or ["no output"])[-1]}


def median(runs: list[dict[str, Any]], key: str) -> float | None:
    """The median of ``key`` over the runs that have it (None: none has)."""
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None
