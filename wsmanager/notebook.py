"""HTML views for Jupyter: a manager, its streams, one stream, an order book.

Plain functions returning HTML strings, with no dependency. Every value that comes from users or
the network (URLs, stream names, symbols, health reasons) is escaped. ``WSManager._repr_html_``
and ``StreamInfo._repr_html_`` call them, so a manager, or a stream's info, shows as a table when
it is the last expression of a cell; ``streams_table(manager.get_stream_info())`` shows a list.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Protocol

from . import _html
from ._html import _age, _bytes, _e, _n, _rate, _state
from .config import WSManagerConfig, redact_url
from .core.state import ConnectionState, Health, StreamInfo, WSManagerMetrics


class ManagerLike(Protocol):
    """What :func:`manager_html` reads: a :class:`~wsmanager.WSManager`."""

    config: WSManagerConfig

    @property
    def destroyed(self) -> bool: ...

    def get_stream_info(self) -> list[StreamInfo]: ...

    def get_metrics(self) -> WSManagerMetrics: ...

    def health(self) -> Health: ...

    def get_connection_status(self) -> ConnectionState: ...


__all__ = ["BookLike", "ManagerLike", "book_html", "manager_html", "stream_html", "streams_table"]

MAX_ROWS = 50  # streams listed in a table; the others are counted in its last row
BOOK_LEVELS = 10  # levels per side in book_html

_RIGHT = ' style="text-align:right"'


class BookLike(Protocol):
    """What :func:`book_html` reads: ``wsmanager.book.OrderBook``, or the fake exchange's
    ``TrueBook``. ``synced`` and ``resyncs`` are read when present; a ``view(n)`` method
    (both sides at one instant) is preferred to ``bids(n)`` and ``asks(n)`` when present."""

    @property
    def symbol(self) -> str: ...

    @property
    def last_update_id(self) -> int | None: ...

    def bids(self, n: int, /) -> Sequence[tuple[Decimal, Decimal]]: ...

    def asks(self, n: int, /) -> Sequence[tuple[Decimal, Decimal]]: ...


def manager_html(
    manager: ManagerLike, *, max_rows: int = MAX_ROWS, now: float | None = None
) -> str:
    """A summary row of ``manager`` (URL without credentials, state, connections and streams,
    subscribers, messages, gaps, drops, reconnect attempts, health), then one row per stream."""
    _check_rows(max_rows)
    infos = manager.get_stream_info()
    metrics = manager.get_metrics()
    health = manager.health()
    config = manager.config
    state = "destroyed" if manager.destroyed else _state(manager.get_connection_status())
    per_connection = config.streams_per_connection
    summary = [
        ("URL", f"<code>{_e(redact_url(config.url))}</code>", ""),
        ("state", state, ""),
        ("connections", _n(metrics.active_connections), "sockets open now"),
        ("streams", _n(metrics.active_streams), f"up to {per_connection:,} per connection"),
        ("subscribers", _n(metrics.subscribers), ""),
        ("messages", _n(metrics.messages_received), "received since the manager started"),
        ("gaps", _n(metrics.gaps), "jumps in sequence numbers"),
        ("dropped", _n(metrics.dropped_messages), "dropped because callbacks fell behind"),
        ("reconnects", _n(metrics.retry_count), "retries after a failed or lost connection"),
        ("health", "healthy" if health else "<b>unhealthy</b>", ""),
    ]
    head = "".join(f"<th{_title(tip)}>{name}</th>" for name, _, tip in summary)
    row = "".join(f"<td>{value}</td>" for _, value, _ in summary)
    parts = [
        '<div class="wsmanager-manager">',
        f"<table><thead><tr>{head}</tr></thead><tbody><tr>{row}</tr></tbody></table>",
    ]
    if health.reasons:
        reasons = "".join(f"<li>{_e(reason)}</li>" for reason in health.reasons)
        parts.append(f"<ul>{reasons}</ul>")
    parts.append(streams_table(infos, max_rows=max_rows, now=now))
    parts.append("</div>")
    return "".join(parts)


_STREAM_COLUMNS = (
    ("stream", ""),
    ("state", ""),
    ("subs", "subscribers"),
    ("messages", ""),
    ("msg/s", "average since the stream started"),
    ("last message", "seconds since the last message"),
    ("gaps", "jumps in sequence numbers"),
    ("reconnects", ""),
    ("buffered", "messages waiting for the callbacks"),
    ("dropped", "dropped because callbacks fell behind"),
)


def streams_table(
    infos: Iterable[StreamInfo], *, max_rows: int = MAX_ROWS, now: float | None = None
) -> str:
    """One row per stream (from ``manager.get_stream_info()``); past ``max_rows`` rows, one
    more row counts the streams left out. ``now`` (epoch seconds) defaults to the clock."""
    _check_rows(max_rows)
    now = time.time() if now is None else now
    infos = list(infos)
    head = "".join(
        f"<th{_title(tip)}{'' if i < 2 else _RIGHT}>{name}</th>"
        for i, (name, tip) in enumerate(_STREAM_COLUMNS)
    )
    rows = []
    for info in infos[:max_rows]:
        cells = [
            f"<td><code>{_e(info.name)}</code></td>",
            f"<td>{_state(info.state)}</td>",
            *(
                f"<td{_RIGHT}>{value}</td>"
                for value in (
                    _n(info.subscribers),
                    _n(info.messages_received),
                    f"{_rate(info, now):.1f}",
                    _age(info.last_message_at, now),
                    _n(info.gaps),
                    _n(info.reconnects),
                    f'<span title="{_bytes(info.buffered_bytes)}">'
                    f"{_n(info.buffered_messages)}</span>",
                    _n(info.dropped_messages),
                )
            ),
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    span = len(_STREAM_COLUMNS)
    if not infos:
        rows.append(f'<tr><td colspan="{span}"><i>no streams</i></td></tr>')
    elif len(infos) > max_rows:
        rows.append(
            f'<tr><td colspan="{span}"><i>and {len(infos) - max_rows:,} more stream(s)</i>'
            "</td></tr>"
        )
    return (
        f'<table class="wsmanager-streams"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def stream_html(info: StreamInfo, *, now: float | None = None) -> str:
    """Every field of one stream's info, one per row."""
    return _html.stream_html(info, now=now)


def book_html(book: BookLike, *, levels: int = BOOK_LEVELS) -> str:
    """The top ``levels`` bids and asks of ``book`` side by side, with its symbol, sync state,
    update id, resyncs, spread and mid price."""
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an int >= 1, got {levels!r}")
    view = getattr(book, "view", None)
    if callable(view):  # both sides at one instant
        snapshot = view(levels)
        synced = bool(snapshot.synced)
        last_update_id = snapshot.last_update_id
        bids, asks = list(snapshot.bids), list(snapshot.asks)
    else:
        synced = bool(getattr(book, "synced", True))
        last_update_id = book.last_update_id
        bids, asks = list(book.bids(levels)), list(book.asks(levels))
    resyncs = getattr(book, "resyncs", None)
    facts = [f"<b>{_e(book.symbol)}</b>", "synced" if synced else "<b>not synced</b>"]
    if last_update_id is not None:
        facts.append(f"update id {_e(last_update_id)}")
    if resyncs is not None:
        facts.append(f"resyncs {_e(resyncs)}")
    if bids and asks:
        best_bid, best_ask = bids[0][0], asks[0][0]
        facts.append(f"spread {_e(_num(best_ask - best_bid))}")
        facts.append(f"mid {_e(_num((best_bid + best_ask) / 2))}")
    head = "".join(f"<th{_RIGHT}>{name}</th>" for name in ("bid qty", "bid", "ask", "ask qty"))
    columns = (
        (_column([q for _, q in bids]), ""),
        (_column([p for p, _ in bids]), ";color:#2e7d32"),
        (_column([p for p, _ in asks]), ";color:#c62828"),
        (_column([q for _, q in asks]), ""),
    )
    rows = []
    for i in range(max(len(bids), len(asks))):
        cells = (
            f'<td style="text-align:right;font-variant-numeric:tabular-nums{colour}">'
            f"{column[i] if i < len(column) else ''}</td>"
            for column, colour in columns
        )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    if not rows:
        empty = "no levels" if synced else "no levels while not synced"
        rows.append(f'<tr><td colspan="4"><i>{empty}</i></td></tr>')
    return (
        f'<div class="wsmanager-book"><p>{" · ".join(facts)}</p>'
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


# -- formatting ------------------------------------------------------------------------------


def _title(tip: str) -> str:
    return f' title="{_e(tip)}"' if tip else ""


def _column(values: Sequence[object]) -> list[str]:
    """Escaped numbers with as many decimals as the longest needs, so the points line up."""
    exponents = [
        v.normalize().as_tuple().exponent
        for v in values
        if isinstance(v, Decimal) and v.is_finite()
    ]
    places = max([0, *(-e for e in exponents if isinstance(e, int))])
    return [
        _e(f"{value:.{places}f}" if isinstance(value, Decimal) and value.is_finite() else value)
        for value in values
    ]


def _num(value: object) -> str:
    """A price or quantity without trailing zeros (``"50000.1"``, not ``"50000.10000000"``)."""
    if isinstance(value, Decimal):
        return f"{value.normalize():f}"
    return str(value)


def _check_rows(max_rows: int) -> None:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 0:
        raise ValueError(f"max_rows must be an int >= 0, got {max_rows!r}")
