"""A progress bar (tqdm) for a history load, where a person is watching: on a terminal or in
Jupyter; silent elsewhere (logs, CI, pipes) unless forced."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "watched"]


def watched() -> bool:
    """Whether a person is likely watching: stderr is a terminal, or this is a Jupyter kernel."""
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):
        pass
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ipython = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:
        return False
    return ipython is not None and "IPKernelApp" in getattr(ipython, "config", {})


class Progress:
    """Market time covered by a load, ``since`` to ``until`` (ms), as a tqdm bar in seconds.

    ``show`` None: :func:`watched` decides; True needs tqdm (``pip install
    'wsmanager[notebook]'``)."""

    def __init__(self, description: str, since: int, until: int, show: bool | None) -> None:
        if show is not None and not isinstance(show, bool):
            raise TypeError(f"progress must be None, True or False, not {show!r}")
        self.since = since
        self.done = since
        self.bar: Any = None
        if show is False or (show is None and not watched()):
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            if show:
                raise ImportError(
                    "progress=True needs tqdm: pip install 'wsmanager[notebook]'"
                ) from None
            return

        class Bar(tqdm):  # type: ignore[misc,valid-type]
            monitor_interval = 0  # no monitor thread left running after the bar

        self.bar = Bar(
            total=max(1, (until - since) // 1000),
            desc=description,
            unit="s",
            unit_scale=True,
            leave=True,
        )

    def __call__(self, covered_ms: int) -> None:
        if self.bar is None or covered_ms <= self.done:
            return
        step = (covered_ms - self.since) // 1000 - (self.done - self.since) // 1000
        self.done = covered_ms
        if step > 0:
            self.bar.update(step)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
