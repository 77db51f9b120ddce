"""OrderBook driven by a local source: a true book that emits contiguous diffs, a feed thread
standing in for the manager's callback thread, and a real HTTP server for the snapshots."""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import SCALE, wait_for

from wsmanager.backoff import BackoffPolicy
from wsmanager.book import BookView, OrderBook, RestRejectedError, depth_stream
from wsmanager.book.levels import Level

FAST_RETRY = BackoffPolicy(base_delay=0.01, max_delay=0.05)
FAST: dict[str, Any] = {"min_snapshot_interval": 0.05, "retry": FAST_RETRY}


# -- the local source --------------------------------------------------------------------------


class TrueBook:
    """The exchange's book: random diffs with contiguous ids; every past state kept by id."""

    def __init__(self, seed: int = 1, levels: int = 40) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()  # guards everything: the test and the HTTP thread read
        self.update_id = 1000
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        for _ in range(levels):
            self.bids[self._price(True)] = self._qty()
            self.asks[self._price(False)] = self._qty()
        self.states: dict[int, tuple[list[Level], list[Level]]] = {}
        self._remember()

    def _price(self, bid: bool) -> str:
        cents = self.rng.randrange(10_000, 10_500) if bid else self.rng.randrange(10_500, 11_000)
        return f"{cents / 100:.2f}"

    def _qty(self) -> str:
        return f"{self.rng.uniform(0.001, 5):.8f}"

    def _remember(self) -> None:
        self.states[self.update_id] = (
            sorted(((Decimal(p), Decimal(q)) for p, q in self.bids.items()), reverse=True),
            sorted((Decimal(p), Decimal(q)) for p, q in self.asks.items()),
        )

    def step(self, changes: int = 4) -> dict[str, Any]:
        """Change the book; the depthUpdate event that says so."""
        with self.lock:
            first = self.update_id + 1
            self.update_id += self.rng.randint(1, 3)  # one event may span several update ids
            sides: dict[str, list[list[str]]] = {"b": [], "a": []}
            for _ in range(changes):
                bid = self.rng.random() < 0.5
                book = self.bids if bid else self.asks
                if book and self.rng.random() < 0.3:
                    price = self.rng.choice(sorted(book))
                    qty = "0.00000000"  # remove
                elif self.rng.random() < 0.05:
                    price, qty = self._price(bid), "0.00000000"  # remove a level never there
                else:
                    price, qty = self._price(bid), self._qty()
                if qty == "0.00000000":
                    book.pop(price, None)
                else:
                    book[price] = qty
                sides["b" if bid else "a"].append([price, qty])
            self._remember()
            return {"e": "depthUpdate", "E": 0, "s": "BTCUSDT", "U": first,
                    "u": self.update_id, **sides}  # fmt: skip

    def snapshot(self, lag: int = 0) -> dict[str, Any]:
        """The book now, or ``lag`` update ids ago (at the nearest id known)."""
        with self.lock:
            ids = [i for i in self.states if i <= self.update_id - lag]
            update_id = max(ids) if ids else min(self.states)
            bids, asks = self.states[update_id]
            return {"lastUpdateId": update_id,
                    "bids": [[str(p), str(q)] for p, q in bids],
                    "asks": [[str(p), str(q)] for p, q in asks]}  # fmt: skip

    def at(self, update_id: int) -> tuple[list[Level], list[Level]]:
        with self.lock:
            return self.states[update_id]


class Feed:
    """``subscribe`` of one stream, delivering ``send()``'s events from a thread of its own,
    one at a time, like the manager's callback thread."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Any] = queue.Queue()
        self.stream: str | None = None
        self.subscribes = 0
        self.unsubscribed = threading.Event()
        self._thread: threading.Thread | None = None
        self._callbacks: tuple[Callable[..., Any], ...] = ()

    def subscribe(
        self,
        stream: str,
        callback: Callable[[Any], object],
        on_error: Callable[[Exception], object] | None = None,
        on_complete: Callable[[], object] | None = None,
    ) -> Callable[[], None]:
        self.stream = stream
        self.subscribes += 1
        self._callbacks = (callback, on_error or (lambda e: None), on_complete or (lambda: None))
        self._thread = threading.Thread(target=self._run, name="test-feed", daemon=True)
        self._thread.start()
        return self.unsubscribed.set

    def _run(self) -> None:
        callback, on_error, on_complete = self._callbacks
        while not self.unsubscribed.is_set():
            try:
                kind, item = self.queue.get(timeout=0.02)
            except queue.Empty:
                continue
            try:
                if kind == "event":
                    callback(item)
                elif kind == "error":
                    on_error(item)
                    return
                elif kind == "complete":
                    on_complete()
                    return
            finally:
                self.queue.task_done()

    def send(self, event: Any) -> None:
        self.queue.put(("event", event))

    def fail(self, error: Exception) -> None:
        self.queue.put(("error", error))

    def complete(self) -> None:
        self.queue.put(("complete", None))

    def wait_delivered(self) -> None:
        self.queue.join()

    def close(self) -> None:
        self.unsubscribed.set()
        if self._thread is not None:
            self._thread.join()


class RestServer:
    """A real HTTP server on 127.0.0.1 answering ``/api/v3/depth`` with ``answer(params)``."""

    def __init__(self, answer: Callable[[dict[str, str]], tuple[int, Any]]) -> None:
        self.answer = answer
        self.requests: list[tuple[float, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                owner.requests.append((time.monotonic(), params))
                status, body = owner.answer(params)
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="test-rest", daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


class Market:
    def __init__(self) -> None:
        self.truth = TrueBook()
        self.feed = Feed()
        self.lag = 0
        self.rest = RestServer(lambda params: (200, self.truth.snapshot(self.lag)))
        self.books: list[OrderBook] = []

    def book(self, **options: Any) -> OrderBook:
        settings = {**FAST, **options}
        book = OrderBook(self.feed.subscribe, "BTCUSDT", rest_url=self.rest.url, **settings)
        self.books.append(book)
        return book

    def steps(self, count: int, *, skip: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        for i in range(count):
            event = self.truth.step()
            if i not in skip:
                self.feed.send(event)

    def close(self) -> None:
        for book in self.books:
            book.close()
        self.feed.close()
        self.rest.close()


@pytest.fixture
def market() -> Iterator[Market]:
    m = Market()
    yield m
    m.close()


def assert_equals_truth(market: Market, view: BookView) -> None:
    assert view.synced and view.last_update_id is not None
    bids, asks = market.truth.at(view.last_update_id)
    assert view.bids == bids
    assert view.asks == asks


def synced_and_caught_up(market: Market, book: OrderBook) -> bool:
    market.feed.wait_delivered()
    return book.synced and book.last_update_id == market.truth.update_id


# -- tests ---------------------------------------------------------------------------------------


def test_the_stream_name_follows_symbol_and_speed() -> None:
    assert depth_stream("BTCUSDT") == "btcusdt@depth@100ms"
    assert depth_stream("BTCUSDT", "1000ms") == "btcusdt@depth"


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"symbol": "BTC/USDT"}, "symbol must be"),
        ({"symbol": ""}, "symbol must be"),
        ({"speed": "250ms"}, "speed must be"),
        ({"limit": 0}, "limit must be an int in 1..5000"),
        ({"limit": 6000}, "limit must be an int in 1..5000"),
        ({"rest_url": "wss://x"}, "rest_url must be"),
        ({"min_snapshot_interval": -1}, "min_snapshot_interval"),
        ({"max_buffered_events": 0}, "max_buffered_events"),
    ],
)
def test_bad_arguments_are_refused_before_subscribing(options: dict[str, Any], match: str) -> None:
    feed = Feed()
    arguments: dict[str, Any] = {"symbol": "BTCUSDT", "rest_url": "http://127.0.0.1:9", **options}
    with pytest.raises(ValueError, match=match):
        OrderBook(feed.subscribe, arguments.pop("symbol"), **arguments)
    assert feed.subscribes == 0


def test_the_book_syncs_and_equals_the_true_book_at_every_update(market: Market) -> None:
    book = market.book()
    assert market.feed.stream == "btcusdt@depth@100ms"
    views: list[BookView] = []
    book.on_update(lambda b: views.append(b.view()))
    market.steps(5)
    assert book.wait_synced(5 * SCALE)
    for _ in range(200):
        market.steps(1)
    assert wait_for(lambda: synced_and_caught_up(market, book))
    assert views and all(v.synced for v in views)
    for view in views:
        assert_equals_truth(market, view)
    assert_equals_truth(market, book.view())
    assert book.resyncs == 0
    assert book.best_bid() == market.truth.at(market.truth.update_id)[0][0]
    assert book.asks(3) == market.truth.at(market.truth.update_id)[1][:3]
    stats = book.stats()
    assert stats.symbol == "BTCUSDT" and stats.synced and stats.snapshot_requests == 1
    assert stats.last_update_id == market.truth.update_id
    assert stats.levels == (len(book.bids()), len(book.asks()))
    assert stats.seconds_since_update is not None and 0 <= stats.seconds_since_update < 5


def test_a_synced_book_has_no_thread_of_its_own(market: Market) -> None:
    book = market.book()
    market.steps(2)
    assert book.wait_synced(5 * SCALE)
    assert wait_for(lambda: not any(t.name.startswith("wsmanager-book") and t.is_alive()
                                    for t in threading.enumerate()))  # fmt: skip


def test_nothing_is_shown_before_the_first_sync(market: Market) -> None:
    release = threading.Event()

    def held(params: dict[str, str]) -> tuple[int, Any]:
        release.wait(5 * SCALE)
        return 200, market.truth.snapshot()

    market.rest.answer = held
    book = market.book()
    stats = book.stats()
    assert stats.seconds_since_update is None and stats.last_update_id is None
    market.steps(3)
    market.feed.wait_delivered()
    assert wait_for(lambda: market.rest.requests)  # the snapshot is on its way
    assert not book.synced and not book.wait_synced(0.05)
    assert book.bids() == [] and book.asks(5) == []
    assert book.best_bid() is None and book.best_ask() is None
    assert book.last_update_id is None and book.view() == BookView(False, None, [], [])
    assert book.stats().levels == (0, 0)
    release.set()
    assert book.wait_synced(5 * SCALE)
    assert_equals_truth(market, book.view())


def test_a_snapshot_older_than_the_buffer_is_retaken_a_second_later(market: Market) -> None:
    for _ in range(100):  # history from before the book subscribed
        market.truth.step()
    market.lag = 50  # the REST side lags the stream
    book = market.book(min_snapshot_interval=1.0)
    market.steps(3)
    assert wait_for(lambda: len(market.rest.requests) >= 1)
    market.lag = 0
    assert book.wait_synced(5 * SCALE)
    assert book.stats().snapshot_requests == 2 and book.resyncs == 0
    first, second = (at for at, _ in market.rest.requests)
    assert second - first >= 1.0
    market.steps(10)
    assert wait_for(lambda: synced_and_caught_up(market, book))
    assert_equals_truth(market, book.view())


def test_a_gap_loses_sync_and_resyncs_from_a_new_snapshot(market: Market) -> None:
    book = market.book()
    states: list[bool] = []
    book.on_update(lambda b: states.append(b.synced))
    market.steps(3)
    assert book.wait_synced(5 * SCALE)
    market.steps(10, skip={4})  # one diff lost
    assert wait_for(lambda: book.resyncs == 1)
    assert wait_for(lambda: synced_and_caught_up(market, book))
    assert_equals_truth(market, book.view())
    assert book.stats().snapshot_requests == 2
    assert False in states and states[-1] is True  # the callbacks saw it lose sync


def test_old_and_duplicate_events_change_nothing(market: Market) -> None:
    book = market.book()
    events = [market.truth.step() for _ in range(6)]
    for event in events[:3]:
        market.feed.send(event)
    assert book.wait_synced(5 * SCALE)
    for event in events[3:]:
        market.feed.send(event)
        market.feed.send(event)  # duplicate
    market.feed.send(events[4])  # old
    assert wait_for(lambda: synced_and_caught_up(market, book))
    assert_equals_truth(market, book.view())
    assert book.resyncs == 0


def test_a_malformed_event_resyncs(market: Market) -> None:
    book = market.book()
    market.steps(3)
    assert book.wait_synced(5 * SCALE)
    market.feed.send({"e": "depthUpdate", "U": "x"})
    market.steps(3)
    assert wait_for(lambda: book.resyncs == 1 and synced_and_caught_up(market, book))
    assert_equals_truth(market, book.view())


def test_readers_never_see_half_an_event(market: Market) -> None:
    prices = [f"{100 + i}.00" for i in range(200)]
    ask_prices = [f"{400 + i}.00" for i in range(200)]
    market.rest.answer = lambda params: (200, {
        "lastUpdateId": 1, "bids": [[p, "1"] for p in prices],
        "asks": [[p, "1"] for p in ask_prices]})  # fmt: skip
    book = market.book()

    def event(n: int) -> dict[str, Any]:  # every level's quantity becomes n
        return {"U": n, "u": n, "b": [[p, str(n)] for p in prices],
                "a": [[p, str(n)] for p in ask_prices]}  # fmt: skip

    market.feed.send(event(2))
    assert book.wait_synced(5 * SCALE)
    torn: list[Any] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            view = book.view()
            quantities = {q for _, q in view.bids} | {q for _, q in view.asks}
            if len(quantities) != 1 or Decimal(view.last_update_id or 0) not in quantities:
                torn.append(view)
            if len({q for _, q in book.bids()}) != 1:
                torn.append("bids")

    reader = threading.Thread(target=read)
    reader.start()
    for n in range(3, 300):
        market.feed.send(event(n))
    market.feed.wait_delivered()
    stop.set()
    reader.join()
    assert book.last_update_id == 299
    assert not torn


def test_update_callbacks_survive_errors_unsubscribe_and_may_close_the_book(
    market: Market, caplog: pytest.LogCaptureFixture
) -> None:
    book = market.book()
    seen: list[int | None] = []
    closer_calls: list[int] = []

    def fails(b: OrderBook) -> None:
        raise RuntimeError("user bug")

    book.on_update(fails)
    unsubscribe = book.on_update(lambda b: seen.append(b.last_update_id))

    def closer(b: OrderBook) -> None:
        closer_calls.append(1)
        if len(closer_calls) == 5:
            b.close()

    book.on_update(closer)
    market.steps(2)
    assert book.wait_synced(5 * SCALE)
    market.steps(2)
    # Around a sync the worker may still be running the callbacks: calls merge, none is lost.
    assert wait_for(lambda: seen and seen[-1] == market.truth.update_id)
    assert "an on_update callback raised" in caplog.text
    unsubscribe()
    unsubscribe()
    count = len(seen)
    for _ in range(5):
        market.steps(1)
        market.feed.wait_delivered()
        if market.feed.unsubscribed.is_set():
            break
    assert len(seen) == count
    assert len(closer_calls) == 5 and market.feed.unsubscribed.is_set()
    assert not book.synced and book.bids() == []
    with pytest.raises(TypeError, match="callable"):
        book.on_update("nope")  # type: ignore[arg-type]


def test_a_refused_snapshot_fails_the_book_and_tells_on_error(market: Market) -> None:
    market.rest.answer = lambda params: (400, {"code": -1121, "msg": "Invalid symbol."})
    errors: list[Exception] = []
    book = market.book(on_error=errors.append)
    market.steps(2)
    started = time.monotonic()
    assert not book.wait_synced(5 * SCALE)
    assert time.monotonic() - started < 2 * SCALE
    assert isinstance(book.error, RestRejectedError) and "Invalid symbol" in str(book.error)
    assert wait_for(lambda: errors == [book.error])
    market.steps(3)  # no new attempt
    market.feed.wait_delivered()
    assert len(market.rest.requests) == 1


def test_rest_errors_are_retried_until_a_snapshot_comes(market: Market) -> None:
    answers = iter([(500, {}), (429, {"code": -1003}), (200, b"{broken")])
    market.rest.answer = lambda params: next(answers, None) or (200, market.truth.snapshot())
    book = market.book()
    market.steps(3)
    assert book.wait_synced(5 * SCALE)
    assert book.stats().snapshot_requests == 4


def test_the_stream_failing_for_good_fails_the_book(market: Market) -> None:
    errors: list[Exception] = []
    book = market.book(on_error=errors.append)
    market.steps(2)
    assert book.wait_synced(5 * SCALE)
    boom = RuntimeError("retries exhausted")
    market.feed.fail(boom)
    market.feed.wait_delivered()  # on_error runs on the feed thread: done when delivered
    assert errors == [boom] and book.error is boom
    assert not book.synced and not book.wait_synced(0) and book.bids() == []


def test_the_stream_completing_ends_the_book(market: Market) -> None:
    book = market.book()
    market.steps(2)
    assert book.wait_synced(5 * SCALE)
    assert not book.closed
    market.feed.complete()
    market.feed.wait_delivered()
    assert not book.synced and not book.wait_synced(0) and book.error is None
    assert book.closed


def test_close_is_prompt_while_rest_backs_off_and_ends_every_thread(market: Market) -> None:
    market.rest.answer = lambda params: (503, {})
    book = market.book(retry=BackoffPolicy(30.0, 30.0))
    market.steps(2)
    assert wait_for(lambda: market.rest.requests)
    started = time.monotonic()
    with book:
        pass
    assert time.monotonic() - started < 1.0 * SCALE
    assert market.feed.unsubscribed.is_set() and not book.wait_synced(1) and book.closed
    book.close()  # idempotent
    assert "closed" in repr(book)


def test_the_1000ms_speed_uses_the_plain_depth_stream(market: Market) -> None:
    book = market.book(speed="1000ms", limit=5000)
    assert market.feed.stream == "btcusdt@depth"
    market.steps(2)
    assert book.wait_synced(5 * SCALE)
    assert market.rest.requests[0][1] == {"symbol": "BTCUSDT", "limit": "5000"}
    assert "synced" in repr(book)
