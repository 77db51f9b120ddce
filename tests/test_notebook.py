"""HTML views for Jupyter: a live manager on the fake exchange, escaping, the order book."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from conftest import Recorder, wait_for

from wsmanager import ConnectionState, StreamInfo, WSManager
from wsmanager.config import redact_url
from wsmanager.notebook import book_html, manager_html, stream_html, streams_table
from wsmanager.testing import FakeExchange

# Every element the views may produce; anything else came from unescaped input.
ALLOWED_TAGS = {"div", "table", "thead", "tbody", "tr", "th", "td", "code", "span", "i", "b"}
ALLOWED_TAGS |= {"ul", "li", "p"}
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


class Tables(HTMLParser):
    """The text of every cell of every table, row by row, and every tag seen (balanced)."""

    def __init__(self, markup: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[list[list[str]]] = []
        self.tags: set[str] = set()
        self.texts: list[str] = []  # text outside tables
        self._open: list[str] = []
        self._cell: list[str] | None = None
        self.feed(markup)
        self.close()
        assert not self._open, f"unclosed: {self._open}"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        assert self._open and self._open[-1] == tag, (self._open, tag)
        self._open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        else:
            self.texts.append(data)


def info(name: str = "btcusdt@trade", **fields: object) -> StreamInfo:
    values: dict[str, object] = {
        "name": name,
        "url": "ws://127.0.0.1:1/ws/" + name,
        "subscribers": 1,
        "state": ConnectionState.CONNECTED,
        "created_at": 1000.0,
        "last_message_at": 1008.0,
        "messages_received": 50,
        "retry_attempt": 0,
        "reconnects": 0,
    }
    values.update(fields)
    return StreamInfo(**values)  # type: ignore[arg-type]


def column(table: list[list[str]], header: str) -> list[str]:
    index = table[0].index(header)
    return [row[index] for row in table[1:]]


# -- a live manager ------------------------------------------------------------------------------


def test_a_live_manager_shows_its_streams_and_figures(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager(streams_per_connection=10)
    trades, depth = Recorder(), Recorder()
    manager.subscribe("btcusdt@trade", trades)
    manager.subscribe("btcusdt@trade", Recorder())
    manager.subscribe("ethusdt@depth@100ms", depth)
    assert exchange.wait_for_open("btcusdt@trade", 1)
    assert exchange.wait_for_open("ethusdt@depth@100ms", 1)
    for _ in range(3):
        exchange.publish("btcusdt@trade")
    exchange.publish("ethusdt@depth@100ms")
    assert trades.wait_messages(3) and depth.wait_messages(1)
    before = manager.get_metrics().messages_received  # frames, control answers included
    page = Tables(manager._repr_html_())
    assert manager.get_metrics().messages_received == before

    assert page.tags <= ALLOWED_TAGS
    summary, streams = page.tables
    head, values = summary
    figures = dict(zip(head, values, strict=True))
    assert figures["URL"] == redact_url(exchange.url)
    assert figures["state"].endswith("connected")
    assert (figures["connections"], figures["streams"], figures["subscribers"]) == ("1", "2", "3")
    assert (figures["messages"], figures["gaps"], figures["health"]) == (
        str(before),
        "0",
        "healthy",
    )
    assert column(streams, "stream") == ["btcusdt@trade", "ethusdt@depth@100ms"]
    assert column(streams, "subs") == ["2", "1"]
    assert column(streams, "messages") == ["3", "1"]
    assert all(state.endswith("connected") for state in column(streams, "state"))
    assert all(float(rate) > 0 for rate in column(streams, "msg/s"))
    assert all(age.endswith(" s") for age in column(streams, "last message"))


def test_a_gap_and_a_stream_info_show(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    got = Recorder()
    manager.subscribe("btcusdt@trade", got)
    assert exchange.wait_for_open("btcusdt@trade", 1)
    exchange.publish("btcusdt@trade")
    exchange.skip("btcusdt@trade", 4)
    exchange.publish("btcusdt@trade")
    assert got.wait_messages(2)
    assert wait_for(lambda: manager.get_metrics().gaps == 1)

    page = Tables(manager._repr_html_())
    assert dict(zip(*page.tables[0], strict=True))["gaps"] == "1"
    assert column(page.tables[1], "gaps") == ["1"]
    (stream,) = manager.get_stream_info()
    rows = dict(Tables(stream._repr_html_()).tables[0])  # type: ignore[arg-type]
    assert rows["stream"] == "btcusdt@trade"
    assert rows["URL"] == stream.url
    assert (rows["messages"], rows["gaps"], rows["subscribers"]) == ("2", "1", "1")


def test_the_url_is_redacted_and_escaped() -> None:
    url = "ws://user:s3cret@127.0.0.1:9/<img src=x onerror=alert(1)>/"
    with WSManager(url=url) as manager:
        markup = manager._repr_html_()
    assert "s3cret" not in markup and "user" not in markup
    assert "<img" not in markup and "&lt;img src=x onerror=alert(1)&gt;" in markup
    page = Tables(markup)
    assert page.tags <= ALLOWED_TAGS
    assert dict(zip(*page.tables[0], strict=True))["URL"] == redact_url(url)


def test_a_destroyed_manager_says_so_and_why() -> None:
    manager = WSManager(url="ws://127.0.0.1:9/ws/")
    manager.destroy()
    page = Tables(manager_html(manager))
    figures = dict(zip(*page.tables[0], strict=True))
    assert (figures["state"], figures["health"]) == ("destroyed", "unhealthy")
    assert "the manager was destroyed" in page.texts
    assert page.tables[1][1] == ["no streams"]


# -- the rendering functions ---------------------------------------------------------------------


def test_hostile_names_and_urls_are_escaped_in_every_view() -> None:
    hostile = info(HOSTILE, url="ws://h/" + HOSTILE)
    for markup in (streams_table([hostile]), stream_html(hostile), hostile._repr_html_()):
        assert "<script" not in markup and "<img" not in markup
        page = Tables(markup)
        assert page.tags <= ALLOWED_TAGS
        cells = [cell for row in page.tables[0] for cell in row]
        assert HOSTILE in cells  # the text comes back exactly as given
    assert "ws://h/" + HOSTILE in Tables(stream_html(hostile)).tables[0][1]


def test_rates_and_ages_come_from_the_snapshot_times() -> None:
    table = Tables(
        streams_table(
            [
                info("a", created_at=100.0, last_message_at=108.0, messages_received=50),
                info("b", created_at=100.0, last_message_at=None, messages_received=0),
                info(
                    "c",
                    created_at=0.0,
                    last_message_at=-9000.0,
                    buffered_messages=1234,
                    dropped_messages=7,
                    state=ConnectionState.CONNECTING,
                ),
            ],
            now=110.0,
        )
    ).tables[0]
    assert column(table, "msg/s") == ["5.0", "0.0", "0.5"]
    assert column(table, "last message") == ["2.0 s", "never", "2.5 h"]
    assert column(table, "buffered")[2] == "1,234"
    assert column(table, "dropped")[2] == "7"
    assert column(table, "state")[2].endswith("connecting")


def test_long_lists_are_cut_with_a_count() -> None:
    infos = [info(f"s{i}@trade") for i in range(5)]
    table = Tables(streams_table(infos, max_rows=2)).tables[0]
    assert column(table, "stream")[:2] == ["s0@trade", "s1@trade"]
    assert table[-1] == ["and 3 more stream(s)"]
    assert len(Tables(streams_table(infos)).tables[0]) == 6
    assert Tables(streams_table([])).tables[0][1] == ["no streams"]
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="max_rows"):
            streams_table(infos, max_rows=bad)  # type: ignore[arg-type]


# -- the order book ------------------------------------------------------------------------------


@dataclass
class Book:
    """The order book's reading surface (``wsmanager.book.OrderBook``): attributes and methods."""

    symbol: str
    synced: bool
    last_update_id: int | None
    resyncs: int
    levels: tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]

    def bids(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        return self.levels[0][:n]

    def asks(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
        return self.levels[1][:n]


def d(text: str) -> Decimal:
    return Decimal(text)


LEVELS = (
    [(d("100.50000000"), d("1.00000000")), (d("100.25000000"), d("0.12500000"))],
    [
        (d("100.75000000"), d("2.00000000")),
        (d("101.00000000"), d("3.10000000")),
        (d("102.00000000"), d("0.00100000")),
    ],
)


def test_the_book_shows_both_sides_aligned_with_spread_and_mid() -> None:
    markup = book_html(Book("BTCUSDT", True, 42, 1, LEVELS))
    page = Tables(markup)
    assert page.tags <= ALLOWED_TAGS
    table = page.tables[0]
    assert table[0] == ["bid qty", "bid", "ask", "ask qty"]
    assert table[1:] == [
        ["1.000", "100.50", "100.75", "2.000"],
        ["0.125", "100.25", "101.00", "3.100"],
        ["", "", "102.00", "0.001"],
    ]
    facts = "".join(page.texts)
    for fact in ("BTCUSDT", "synced", "update id 42", "resyncs 1", "spread 0.25", "mid 100.625"):
        assert fact in facts
    assert len(Tables(book_html(Book("BTCUSDT", True, 42, 1, LEVELS), levels=1)).tables[0]) == 2
    whole = ([(d("100E+1"), d("5"))], [(d("1001.00000000"), d("1E+1"))])
    table = Tables(book_html(Book("BTCUSDT", True, 1, 0, whole))).tables[0]
    assert table[1] == ["5", "1000", "1001", "10"]


def test_an_unsynced_book_and_a_hostile_symbol() -> None:
    page = Tables(book_html(Book(HOSTILE, False, None, 0, ([], []))))
    assert page.tags <= ALLOWED_TAGS
    assert HOSTILE in page.texts
    assert "not synced" in page.texts
    assert page.tables[0][1] == ["no levels while not synced"]
    for bad in (0, -1, 2.0, None):
        with pytest.raises(ValueError, match="levels"):
            book_html(Book("X", True, 1, 0, LEVELS), levels=bad)  # type: ignore[arg-type]


def test_a_view_method_is_read_for_both_sides_at_once() -> None:
    @dataclass(frozen=True)
    class View:
        synced: bool
        last_update_id: int | None
        bids: list[tuple[Decimal, Decimal]]
        asks: list[tuple[Decimal, Decimal]]

    class ViewedBook(Book):
        def view(self, n: int | None = None) -> View:
            return View(True, 43, self.levels[0][:n], self.levels[1][:n])

        def bids(self, n: int | None = None) -> list[tuple[Decimal, Decimal]]:
            raise AssertionError("bids() read apart from asks()")

        asks = bids

    page = Tables(book_html(ViewedBook("BTCUSDT", False, 42, 0, LEVELS), levels=2))
    assert "update id 43" in "".join(page.texts)
    assert len(page.tables[0]) == 3


def test_the_fake_exchanges_true_book_renders(exchange: FakeExchange) -> None:
    true = exchange.book("BTCUSDT")
    table = Tables(book_html(true, levels=5)).tables[0]
    assert len(table) == 6
    assert [Decimal(p) for p in column(table, "bid")] == [p for p, _ in true.bids(5)]
    assert [Decimal(p) for p in column(table, "ask")] == [p for p, _ in true.asks(5)]
