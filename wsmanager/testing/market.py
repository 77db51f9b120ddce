"""The exchange's market: one feed per stream, one true order book per symbol, made on first
use and deterministic for a given ``seed`` (the server's loop thread only). ``kind`` is
``"spot"``, or a futures market (``"usdm"``, ``"coinm"``: :mod:`.futures`), whose depth events
chain by ``pu`` and whose payloads have the futures shapes.

A message is a ``str`` (a JSON text frame) or, with ``encoding="sbe"``, ``bytes`` (a binary SBE
frame: :mod:`.sbe_market`) for the four streams the exchange serves in SBE."""

from __future__ import annotations

import json
import random
from typing import Any

from ..config import ENCODINGS
from .book import DepthFeed, OrderBook, PartialDepthFeed
from .futures import (
    FUTURES_HIDDEN_IDS,
    FuturesAggTradeFeed,
    FuturesBookTickerFeed,
    FuturesDepthFeed,
    MarkPriceFeed,
)
from .klines import KlineFeed, start_live_after
from .past import Pasts, PastSpec
from .payloads import (
    AggTradeFeed,
    BookTickerFeed,
    CounterFeed,
    Feed,
    TradeFeed,
    stream_kind,
    stream_symbol,
)
from .sbe_market import encode_message, is_sbe_stream, make_sbe_feed, sbe_kind
from .surface import BlockTradeFeed, ReferencePriceFeed

__all__ = ["ENCODINGS", "Market", "MarketMessage", "dumps"]

MarketMessage = str | bytes  # a JSON text frame's text, or a binary (SBE) frame's bytes


def dumps(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


class Market:
    """Feeds and books; ``publish`` makes the next message(s) of a stream, encoded."""

    def __init__(
        self,
        seed: int | None,
        book_levels: int,
        past: PastSpec | None = None,
        kind: str = "spot",
        encoding: str = "json",
    ) -> None:
        self.kind = kind
        self.futures = kind != "spot"
        self.seed = seed if seed is not None else random.randrange(2**32)
        self.book_levels = book_levels
        self.encoding = encoding
        # past: a PastSpec (opt-in): aggTrade and kline feeds continue a deterministic history
        self.pasts = None if past is None else Pasts(self.seed, past)
        self.feeds: dict[str, Feed] = {}
        self.books: dict[str, OrderBook] = {}
        self.last: dict[str, MarketMessage] = {}  # stream -> the last message sent (for repeat)

    def _rng(self, name: str) -> random.Random:
        return random.Random(f"{self.seed}:{name}")

    def book(self, symbol: str) -> OrderBook:
        symbol = symbol.upper()
        book = self.books.get(symbol)
        if book is None:
            book = self.books[symbol] = OrderBook(symbol, self._rng(symbol), self.book_levels)
            if self.futures:
                book.hidden_ids = FUTURES_HIDDEN_IDS
        return book

    def feed(self, stream: str) -> Feed:
        feed = self.feeds.get(stream)
        if feed is None:
            feed = self.feeds[stream] = self._make_feed(stream)
        return feed

    def _make_feed(self, stream: str) -> Feed:
        kind = stream_kind(stream)
        rng = self._rng(stream)
        if self.encoding == "sbe" and is_sbe_stream(stream):
            depth = sbe_kind(stream) in ("depth", "depth20")
            book = self.book(stream_symbol(stream)) if depth else None
            return make_sbe_feed(stream, rng, book)  # type: ignore[no-any-return]
        if self.futures:
            feed = self._futures_feed(stream, kind, rng)
            if feed is not None:
                return feed
        if kind == "referencePrice":
            return ReferencePriceFeed(stream, rng)
        if kind == "blockTrade":
            return BlockTradeFeed(stream, rng)
        if kind == "trade":
            return TradeFeed(stream, rng)
        if kind == "aggTrade":
            feed = AggTradeFeed(stream, rng)
            if self.pasts is not None:
                start_live_after(feed, self.pasts.of(stream_symbol(stream)))
            return feed
        if kind == "kline" and self.pasts is not None:
            symbol = stream_symbol(stream)
            return KlineFeed(stream, self.pasts.of(symbol), self.agg_trades(symbol))
        if kind == "bookTicker":
            return BookTickerFeed(stream, rng)
        if kind == "depth":
            return DepthFeed(self.book(stream_symbol(stream)))
        if kind == "partial_depth":
            levels = int(stream.split("@")[1][5:])
            return PartialDepthFeed(self.book(stream_symbol(stream)), levels)
        return CounterFeed(stream, rng)

    def _futures_feed(self, stream: str, kind: str, rng: random.Random) -> Feed | None:
        if kind == "depth":
            return FuturesDepthFeed(self.book(stream_symbol(stream)))
        if kind == "aggTrade":
            return FuturesAggTradeFeed(stream, rng)
        if kind == "bookTicker":
            return FuturesBookTickerFeed(stream, rng)
        if kind in ("markPrice", "!markPrice@arr"):
            return MarkPriceFeed(stream, rng)
        return None

    def restart_ids(self, stream: str, start: int) -> None:
        """``stream``'s numbers start again at ``start`` (a testnet reset, a relisting); for a
        depth stream, the symbol's book update ids (every depth stream of the symbol)."""
        feed = self.feed(stream)
        if isinstance(feed, DepthFeed | PartialDepthFeed):
            book = feed.book
            book.last_update_id = start - 1
            book.history.clear()
            for depth in book.feeds:
                if depth._first is not None:
                    depth._held.append(depth._emit())
                depth.number = start - 1
                if isinstance(depth, FuturesDepthFeed):
                    depth.previous = start - 1
            return
        if isinstance(feed, AggTradeFeed):
            feed.history.clear()
        feed.number = start - 1  # type: ignore[misc]

    def agg_trades(self, symbol: str) -> AggTradeFeed:
        """The aggregate-trade feed (and history) of ``symbol``."""
        feed = self.feed(f"{symbol.lower()}@aggTrade")
        assert isinstance(feed, AggTradeFeed)
        return feed

    def publish(self, stream: str, payload: Any = None) -> list[MarketMessage]:
        """The next message(s) of ``stream``, encoded; ``payload``: sent as given."""
        payloads = self.feed(stream).next_payloads() if payload is None else [payload]
        messages = [self.encode(stream, p) for p in payloads]
        self.last[stream] = messages[-1]
        return messages

    def encode(self, stream: str, payload: Any) -> MarketMessage:
        """``payload`` as it goes out on ``stream``: ``bytes`` as is (a binary frame); a payload
        of an SBE stream of an SBE market as one SBE frame (a list: the trades of one event);
        anything else as JSON text."""
        if isinstance(payload, bytes):
            return payload
        if self.encoding == "sbe" and is_sbe_stream(stream):
            return encode_message(payload)
        return dumps(payload)

    def recorded(self, stream: str, text: str) -> MarketMessage:
        """A recorded payload's JSON text as it goes out on ``stream`` (a replay)."""
        if self.encoding == "sbe" and is_sbe_stream(stream):
            return encode_message(json.loads(text))
        return text

    def sequence(self, stream: str) -> int:
        feed = self.feeds.get(stream)
        return feed.number if feed is not None else 0
