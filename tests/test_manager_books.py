"""Order books and aggTrade backfill through the manager: wiring, sharing, metrics, endpoint."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable
from decimal import Decimal

from conftest import Recorder, wait_for

from wsmanager import Gap, OrderBook, WSManager
from wsmanager.monitoring import serve_metrics
from wsmanager.testing import FakeExchange

MakeManager = Callable[..., WSManager]


def test_order_books_share_the_depth_stream_and_match_the_exchange(
    make_manager: MakeManager,
) -> None:
    with FakeExchange(rate=20, seed=3) as exchange:
        manager = make_manager(url=exchange.url, streams_per_connection=200)
        first = manager.order_book("BTCUSDT", exchange.rest_url, limit=100)
        second = manager.order_book("BTCUSDT", exchange.rest_url, limit=100)
        assert isinstance(first, OrderBook)
        assert first.wait_synced(10) and second.wait_synced(10)
        assert manager.get_active_streams_count() == 1  # both read btcusdt@depth@100ms
        assert manager.get_stream_info()[0].subscribers == 2
        exchange.set_rate(0)
        view = first.view()
        truth = exchange.book("BTCUSDT", update_id=view.last_update_id)
        assert [level[0] for level in view.bids[:5]] == [p for p, _ in truth.bids()[:5]]
        assert all(isinstance(price, Decimal) for price, _ in view.bids)
        metrics = manager.get_metrics()
        assert (metrics.order_books, metrics.order_books_synced) == (2, 2)
        assert metrics.order_book_snapshot_requests >= 2
        exposition = manager.get_prometheus_metrics()
        assert "ws_manager_order_books 2.0" in exposition
        assert 'ws_manager_order_book_synced{symbol="BTCUSDT"} 1.0' in exposition
        assert "ws_manager_order_book_seconds_since_update" in exposition
        with serve_metrics(manager, port=0) as server, urllib.request.urlopen(server.url) as r:
            document = json.loads(r.read())
        assert document["metrics"]["orderBooks"] == 2
        assert [b["symbol"] for b in document["orderBooks"]] == ["BTCUSDT", "BTCUSDT"]
        assert "<table" in first._repr_html_()
        first.close()
        assert wait_for(lambda: manager.get_metrics().order_books == 1)
        manager.destroy()
        assert second.closed  # destroy closes the books it made


def test_a_gap_in_an_aggtrade_stream_is_filled_from_rest_before_the_message(
    make_manager: MakeManager,
) -> None:
    with FakeExchange(seed=5) as exchange:
        manager = make_manager(
            url=exchange.url, streams_per_connection=200, rest_url=exchange.rest_url
        )
        gaps: list[Gap] = []
        manager.on_gap(gaps.append)
        filled, plain = Recorder(), Recorder()
        manager.subscribe("btcusdt@aggTrade", filled, backfill=True)
        manager.subscribe("btcusdt@aggTrade", plain)
        assert exchange.wait_for_open("btcusdt@aggTrade", 1)
        exchange.publish("btcusdt@aggTrade")
        exchange.skip("btcusdt@aggTrade", 1500)  # more than one REST page
        exchange.publish("btcusdt@aggTrade")
        exchange.publish("btcusdt@aggTrade")
        assert filled.wait_messages(1503, 10)
        ids = [m["a"] for m in filled.messages]
        assert ids == list(range(ids[0], ids[0] + 1503))  # in order, nothing missing, no repeat
        assert [m["a"] for m in plain.messages] == ids  # the stream's, for every subscriber
        assert gaps == []
        info = manager.get_stream_info()[0]
        assert info.gaps == 0 and manager.get_metrics().backfilled_messages == 1500


def test_when_rest_is_down_the_gap_is_reported_instead(make_manager: MakeManager) -> None:
    with FakeExchange(seed=6) as exchange:
        manager = make_manager(
            url=exchange.url, streams_per_connection=200, rest_url=exchange.rest_url
        )
        gap_seen = threading.Event()
        gaps: list[Gap] = []
        manager.on_gap(lambda gap: (gaps.append(gap), gap_seen.set()))
        recorder = Recorder()
        manager.subscribe("btcusdt@aggTrade", recorder, backfill=True)
        manager.subscribe("ethusdt@trade", Recorder())
        assert exchange.wait_for_open("btcusdt@aggTrade", 1)
        exchange.publish("btcusdt@aggTrade")
        exchange.rest_errors(status=500, count=1000)
        exchange.skip("btcusdt@aggTrade", 3)
        exchange.publish("btcusdt@aggTrade")
        assert gap_seen.wait(30) and recorder.wait_messages(2)
        first = recorder.messages[0]["a"]
        assert gaps == [Gap("btcusdt@aggTrade", first + 1, first + 4, after_reconnect=False)]
        assert manager.get_stream_info()[0].gaps == 1
