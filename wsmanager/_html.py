"""HTML pieces shared by the notebook views and ``StreamInfo._repr_html_`` (pure: no imports
from the rest of wsmanager, so value types can render themselves without depending on the views).
"""

from __future__ import annotations

import html
import time
from typing import Any

__all__ = ["stream_html"]

_STATE_COLOURS = {
    "connected": "#2e7d32",
    "connecting": "#ef6c00",
    "disconnected": "#757575",
}


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _state(state: Any) -> str:
    colour = _STATE_COLOURS.get(str(getattr(state, "value", state)), "#757575")
    return f'<span style="color:{colour}">●</span> {_e(getattr(state, "value", state))}'


def _rate(info: Any, now: float) -> float:
    elapsed = now - info.created_at
    return info.messages_received / elapsed if elapsed > 0 else 0.0


def _age(at: float | None, now: float) -> str:
    if at is None:
        return "never"
    seconds = max(0.0, now - at)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _bytes(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / (1024 * 1024):.1f} MiB"


def stream_html(info: Any, *, now: float | None = None) -> str:
    """Every field of one stream's info, one per row."""
    now = time.time() if now is None else now
    fields = [
        ("stream", f"<code>{_e(info.name)}</code>"),
        ("URL", f"<code>{_e(info.url)}</code>"),
        ("state", _state(info.state)),
        ("connection", f"#{info.connection}"),
        ("subscribers", _n(info.subscribers)),
        ("messages", _n(info.messages_received)),
        ("msg/s (average)", f"{_rate(info, now):.1f}"),
        ("last message", _age(info.last_message_at, now)),
        ("started", f"{_age(info.created_at, now)} ago"),
        ("gaps", _n(info.gaps)),
        ("duplicates dropped", _n(info.duplicates)),
        ("reconnects", _n(info.reconnects)),
        ("retry attempt", _n(info.retry_attempt)),
        ("resubscribes", _n(info.resubscribes)),
        ("buffered", f"{_n(info.buffered_messages)} ({_bytes(info.buffered_bytes)})"),
        ("dropped", _n(info.dropped_messages)),
        ("invalid", _n(info.invalid_messages)),
        ("oversized", _n(info.oversized_messages)),
        ("callback errors", _n(info.callback_errors)),
    ]
    rows = "".join(f"<tr><th>{name}</th><td>{value}</td></tr>" for name, value in fields)
    return f'<table class="wsmanager-stream"><tbody>{rows}</tbody></table>'
