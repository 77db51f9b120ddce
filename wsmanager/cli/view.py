"""The live terminal view of a manager (``wsmanager demo``, ``wsmanager stream --view``).

:class:`LiveView` renders what a manager is doing as text: connections against streams, the
host's connection budget, messages and their rate, gaps, buffers. On a terminal it redraws in
place (cursor home, clear); otherwise it prints plain blocks, one per tick, for logs and pipes.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from ..config import redact_url
from ..net.limits import HOST_BUDGETS, host_key

if TYPE_CHECKING:
    from ..manager import WSManager

__all__ = ["LiveView"]

_HOME_AND_CLEAR = "\x1b[H\x1b[2J"


class LiveView:
    """Renders ``manager`` at each :meth:`tick`; rates are per second since the previous tick."""

    def __init__(
        self, manager: WSManager, out: TextIO | None = None, *, interactive: bool | None = None
    ) -> None:
        self.manager = manager
        self.out = out or sys.stdout
        self.interactive = self.out.isatty() if interactive is None else interactive
        self._started = time.monotonic()
        self._last_tick = self._started
        self._previous: dict[str, int] = {}
        self._previous_total = 0
        self.notes: list[str] = []  # shown under the table (e.g. "fault injected")

    def lines(self) -> list[str]:
        """The view as text lines (and the state kept for the next rates)."""
        manager = self.manager
        now = time.monotonic()
        interval = max(now - self._last_tick, 1e-6)
        metrics = manager.get_metrics()
        infos = manager.get_stream_info()
        config = manager.config
        budget = config.connection_budget
        key = host_key(config.url, config.proxy)
        if budget is None:
            budget_text = "budget: off"
        else:
            used = HOST_BUDGETS.attempts_in(key, budget[1])
            budget_text = f"budget {used}/{budget[0]} attempts per {budget[1]:g}s"
        paused = HOST_BUDGETS.paused_for(key)
        if paused > 0:
            budget_text += f", paused {paused:.0f}s (Retry-After)"
        total_rate = (metrics.messages_received - self._previous_total) / interval
        lines = [
            f"wsmanager  {redact_url(config.url)}  {manager.get_connection_status().value}"
            f"  t={now - self._started:.1f}s",
            f"connections {metrics.active_connections} open (hwm {metrics.active_connections_hwm})"
            f" for {metrics.active_streams} streams, {metrics.subscribers} subscribers;"
            f" {budget_text}, {metrics.connection_attempts_throttled} throttled",
            f"messages {metrics.messages_received:,} ({total_rate:,.1f}/s)  gaps {metrics.gaps}"
            f"  duplicates {metrics.duplicates_dropped}  dropped {metrics.dropped_messages}"
            f"  retries {metrics.retry_count}  rotations {metrics.rotations}"
            f"  client msgs {metrics.client_messages_sent}",
            "",
            f"{'stream':<28}{'subs':>5}  {'state':<11}{'messages':>10}{'rate/s':>9}"
            f"{'gaps':>6}{'buffer':>14}{'conn':>6}",
        ]
        for info in sorted(infos, key=lambda i: i.name):
            rate = (info.messages_received - self._previous.get(info.name, 0)) / interval
            buffer = f"{info.buffered_messages}/{config.max_buffered_messages}"
            lines.append(
                f"{info.name[:27]:<28}{info.subscribers:>5}  {info.state.value:<11}"
                f"{info.messages_received:>10,}{rate:>9.1f}{info.gaps:>6}{buffer:>14}"
                f"{info.connection:>6}"
            )
        health = manager.health()
        lines.append("")
        lines.append("healthy" if health.healthy else "UNHEALTHY: " + "; ".join(health.reasons))
        lines.extend(self.notes)
        self._previous = {i.name: i.messages_received for i in infos}
        self._previous_total = metrics.messages_received
        self._last_tick = now
        return lines

    def tick(self) -> None:
        """Draw the view once: in place on a terminal, as a plain block otherwise."""
        text = "\n".join(self.lines())
        if self.interactive:
            self.out.write(_HOME_AND_CLEAR + text + "\n")
        else:
            self.out.write(text + "\n\n")
        self.out.flush()
