"""Many streams per connection against an exchange that enforces Binance's rules (issue 11)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, wait_for

from wsmanager import Gap, StreamRejectedError, WSManager
from wsmanager.testing import BINANCE_SPOT_RULES, ExchangeRules, FakeExchange

# Combined streams, Binance's defaults except the timings the tests shorten.


def _symbols(count: int) -> list[str]:
    return [f"sym{i:04d}usdt@trade" for i in range(count)]


@pytest.fixture
def binance() -> Iterator[FakeExchange]:
    with FakeExchange(rules=BINANCE_SPOT_RULES) as exchange:
        yield exchange
        assert exchange.violations() == [], exchange.violations()


def _wsmanager_threads() -> list[str]:
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("wsmanager-") and not t.name.startswith("wsmanager-fake")
    ]


def test_400_streams_subscribed_in_a_tight_loop_keep_every_rule(
    binance: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(binance, connection_budget=(300, 300.0))
    names = _symbols(400)
    got: dict[str, int] = {}
    lock = threading.Lock()

    def counter(name: str) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            with lock:
                got[name] = got.get(name, 0) + 1

        return on_message

    for name in names:
        manager.subscribe(name, counter(name))
    assert binance.wait_until(lambda: all(binance.stats(n).open == 1 for n in names), 10 * SCALE)
    for name in names:
        binance.publish(name)
    assert wait_for(lambda: len(got) == 400, 10)
    assert len(binance.connections()) == 2
    assert manager.get_metrics().active_connections == 2
    threads = _wsmanager_threads()
    assert len(threads) <= 2 * 2 + 1, threads  # reader + callbacks per connection, supervisor


def test_every_connection_dropped_at_once_twice_stays_within_the_budget(
    manager_for: Callable[..., WSManager],
) -> None:
    rules = ExchangeRules.binance(connection_attempts=(12, 2.0), ban_seconds=5.0)
    with FakeExchange(rules=rules) as exchange:
        manager = manager_for(
            exchange,
            streams_per_connection=5,
            connection_budget=(12, 2.0),
            max_retry_attempts=None,
        )
        names = _symbols(40)  # 8 connections
        recorder = Recorder()
        for name in names:
            manager.subscribe(name, recorder)
        assert exchange.wait_until(lambda: exchange.open_connections() == 8, 10 * SCALE)
        for round_ in range(2):
            exchange.drop()
            opened = 8 * (round_ + 2)  # connections the exchange accepted by the end of the round
            assert exchange.wait_until(
                lambda opened=opened: (
                    exchange.open_connections() == 8
                    and len(exchange.connections(open_only=False)) >= opened
                    and all(exchange.stats(n).open == 1 for n in names)
                ),
                20 * SCALE,
            )
        assert exchange.violations() == []
        times = sorted(exchange.attempt_times())
        assert len(times) >= 24
        worst = max(sum(1 for t in times if start <= t < start + 2.0) for start in times)
        assert worst <= 12
        assert manager.get_metrics().connection_attempts_throttled > 0
        for name in names:
            exchange.publish(name)
        assert recorder.wait_messages(40)


def test_a_429_with_retry_after_pauses_every_stream_of_the_host(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange, streams_per_connection=1)
    names = _symbols(4)
    for name in names:
        manager.subscribe(name, lambda message: None)
    assert exchange.wait_until(lambda: exchange.open_connections() == 4)
    exchange.reject(429, {"Retry-After": "1"})
    dropped_at = time.monotonic()
    exchange.drop()
    assert exchange.wait_until(lambda: exchange.total_attempts() >= 5)
    first_429 = min(t for t in exchange.attempt_times() if t >= dropped_at)
    exchange.accept_normally()
    assert exchange.wait_until(lambda: exchange.open_connections() == 4, 5 * SCALE)
    later = [t for t in exchange.attempt_times() if t > first_429 + 0.05]
    assert later and min(later) >= first_429 + 0.9  # nobody tried again during the pause


def test_unsubscribe_of_one_stream_keeps_the_connection_for_the_others(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange)
    a, b, c = _symbols(3)
    recorders = {name: Recorder() for name in (a, b, c)}
    unsubscribes = {name: manager.subscribe(name, recorders[name]) for name in (a, b, c)}
    assert exchange.wait_until(lambda: all(exchange.stats(n).open == 1 for n in (a, b, c)))
    (connection,) = exchange.connections()
    unsubscribes[a]()
    assert exchange.wait_until(lambda: exchange.stats(a).open == 0)
    assert any(
        request.get("method") == "UNSUBSCRIBE" and request.get("params") == [a]
        for _, request, _ in exchange.control_log()
        if isinstance(request, dict)
    )
    assert [c.id for c in exchange.connections()] == [connection.id]
    exchange.publish(b)
    assert recorders[b].wait_messages(1)
    unsubscribes[b]()
    unsubscribes[c]()
    assert exchange.wait_until(lambda: exchange.open_connections() == 0)
    (closed,) = exchange.connections(open_only=False)
    assert closed.close_code == 1000


def _sequenced(recorder: Recorder, key: str = "t") -> list[int]:
    return [m[key] for m in recorder.messages]


def test_rotations_under_a_sequenced_feed_lose_and_repeat_nothing(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rules=BINANCE_SPOT_RULES, rate=50) as exchange:
        manager = manager_for(exchange, max_connection_age=0.6)
        gaps: list[Gap] = []
        manager.on_gap(gaps.append)
        trades, books = Recorder(), Recorder()
        manager.subscribe("btcusdt@trade", trades)
        manager.subscribe("btcusdt@depth@100ms", books)
        assert wait_for(lambda: manager.get_metrics().rotations >= 6, 15)
        manager.destroy()
        assert exchange.violations() == []
    numbers = _sequenced(trades)
    assert len(numbers) > 100
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    depth = [(m["U"], m["u"]) for m in books.messages]
    assert all(depth[i + 1][0] == depth[i][1] + 1 for i in range(len(depth) - 1))
    assert gaps == []


def test_server_shutdown_hands_over_without_a_gap(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rules=BINANCE_SPOT_RULES, rate=50) as exchange:
        manager = manager_for(exchange)
        gaps: list[Gap] = []
        manager.on_gap(gaps.append)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert trades.wait_messages(10)
        (before,) = exchange.connections()
        announced = time.monotonic()
        exchange.server_shutdown(enveloped=True, close_after=3.0)
        assert exchange.wait_until(
            lambda: (
                any(c.id != before.id for c in exchange.connections())
                and len(exchange.connections()) == 1
            ),
            2 * SCALE,
        )
        assert time.monotonic() - announced < 1.5 * SCALE
        count = len(trades.messages)
        assert trades.wait_messages(count + 20)
        manager.destroy()
        assert exchange.violations() == []
    numbers = _sequenced(trades)
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert gaps == []
    assert not any(m.get("e") == "serverShutdown" for m in trades.messages)


def test_a_skipped_range_is_exactly_one_gap_with_the_right_numbers(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange)
    gaps: list[Gap] = []
    gap_seen = threading.Event()
    manager.on_gap(lambda gap: (gaps.append(gap), gap_seen.set()))
    recorder = Recorder()
    manager.subscribe("btcusdt@trade", recorder)
    assert exchange.wait_for_open("btcusdt@trade", 1)
    exchange.publish("btcusdt@trade")
    assert recorder.wait_messages(1)
    last = recorder.messages[-1]["t"]
    exchange.skip("btcusdt@trade", 5)
    exchange.publish("btcusdt@trade")
    assert recorder.wait_messages(2) and gap_seen.wait(5)
    assert gaps == [Gap("btcusdt@trade", last + 1, last + 6, after_reconnect=False)]
    info = manager.get_stream_info()[0]
    assert info.gaps == 1 and manager.get_metrics().gaps == 1
    assert 'ws_manager_stream_gaps_total{stream="btcusdt@trade"} 1.0' in (
        manager.get_prometheus_metrics()
    )


def test_a_repeated_message_is_not_delivered_twice(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange)
    recorder = Recorder()
    manager.subscribe("btcusdt@aggTrade", recorder)
    assert exchange.wait_for_open("btcusdt@aggTrade", 1)
    exchange.publish("btcusdt@aggTrade")
    exchange.repeat("btcusdt@aggTrade", times=2)
    exchange.publish("btcusdt@aggTrade")
    assert recorder.wait_messages(2)
    assert wait_for(lambda: manager.get_stream_info()[0].duplicates == 2)
    numbers = _sequenced(recorder, "a")
    assert numbers == [numbers[0], numbers[0] + 1]


def test_a_silenced_stream_is_resubscribed_within_stale_after(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rules=BINANCE_SPOT_RULES, rate=20) as exchange:
        manager = manager_for(exchange, stale_after=0.5)
        quiet, busy = Recorder(), Recorder()
        manager.subscribe("btcusdt@trade", quiet)
        manager.subscribe("ethusdt@trade", busy)
        assert quiet.wait_messages(5) and busy.wait_messages(5)
        exchange.silence("btcusdt@trade")
        silenced_at = time.monotonic()
        count = len(quiet.messages)
        assert quiet.wait_messages(count + 1, 5)
        assert time.monotonic() - silenced_at < 0.5 + 1.5 * SCALE
        info = {i.name: i for i in manager.get_stream_info()}
        assert info["btcusdt@trade"].resubscribes == 1
        assert info["ethusdt@trade"].resubscribes == 0
        assert info["btcusdt@trade"].gaps == 1  # what was missed while silent is reported
        manager.destroy()
        assert exchange.violations() == []


@pytest.mark.parametrize("when", ["joining an open connection", "named in the URL"])
def test_a_refused_stream_fails_alone(
    exchange: FakeExchange, manager_for: Callable[..., WSManager], when: str
) -> None:
    exchange.refuse_stream("bad@trade", code=2, msg="Invalid request: unknown stream")
    manager = manager_for(exchange)
    good, other, bad = Recorder(), Recorder(), Recorder()
    if when == "joining an open connection":
        manager.subscribe("btcusdt@trade", good)
        assert exchange.wait_for_open("btcusdt@trade", 1)
        manager.subscribe("bad@trade", bad, bad.on_error)
        manager.subscribe("ethusdt@trade", other)
    else:
        manager.subscribe("bad@trade", bad, bad.on_error)
        manager.subscribe("btcusdt@trade", good)
        manager.subscribe("ethusdt@trade", other)
    assert bad.wait(lambda r: bool(r.errors), 5)
    (error,) = bad.errors
    assert isinstance(error, StreamRejectedError)
    assert error.stream == "bad@trade" and error.code == 2 and "unknown stream" in error.reason
    assert exchange.wait_until(
        lambda: (
            exchange.stats("btcusdt@trade").open == 1 and exchange.stats("ethusdt@trade").open == 1
        )
    )
    exchange.publish("btcusdt@trade")
    exchange.publish("ethusdt@trade")
    assert good.wait_messages(1) and other.wait_messages(1)
    assert sorted(i.name for i in manager.get_stream_info()) == ["btcusdt@trade", "ethusdt@trade"]
    assert manager.get_metrics().streams_failed == 1


def test_a_slow_callback_does_not_hold_back_another_stream_on_the_same_connection(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange)
    latencies: list[float] = []

    def slow(message: Any) -> None:
        time.sleep(0.2)  # the behaviour under test: a callback that takes 0.2 s

    def fast(message: dict[str, Any]) -> None:
        latencies.append(time.monotonic() - message["sent_at"])

    manager.subscribe("slow@trade", slow)
    manager.subscribe("fast@trade", fast)
    assert exchange.wait_until(
        lambda: exchange.stats("slow@trade").open == 1 and exchange.stats("fast@trade").open == 1
    )
    assert len(exchange.connections()) == 1
    for _ in range(10):
        exchange.publish("slow@trade", {"e": "trade"})
    for _ in range(10):
        exchange.publish("fast@trade", {"e": "trade", "sent_at": time.monotonic()})
        time.sleep(0.05)  # paces the publisher (not a wait for a result)
    assert wait_for(lambda: len(latencies) == 10, 10)
    assert max(latencies) < 0.2 + 0.15 * SCALE, latencies


def test_subscribe_churn_never_breaks_the_client_message_rate(
    binance: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(binance)
    names = _symbols(60)
    keep = manager.subscribe("btcusdt@trade", lambda message: None)
    assert binance.wait_for_open("btcusdt@trade", 1)
    for _round in range(3):
        handles = [manager.subscribe(name, lambda message: None) for name in names]
        for handle in handles[::2]:
            handle()
    wanted = {"btcusdt@trade", *names[1::2]}
    assert binance.wait_until(
        lambda: {n for c in binance.connections() for n in c.streams} == wanted, 10 * SCALE
    )
    (connection,) = binance.connections()
    times = binance.client_message_times(connection.id)
    # At most 4 in any second as we sent them; as the exchange saw them, allow 0.1 s of skew.
    assert max(sum(1 for t in times if s <= t < s + 0.9) for s in times) <= 4
    keep()


def test_an_unanswered_subscribe_counts_as_a_failed_connection(
    exchange: FakeExchange, manager_for: Callable[..., WSManager]
) -> None:
    manager = manager_for(exchange)
    manager.subscribe("btcusdt@trade", lambda message: None)
    assert exchange.wait_for_open("btcusdt@trade", 1)
    exchange.answer_control(False)
    manager.subscribe("ethusdt@trade", lambda message: None)
    assert exchange.wait_for_attempts("btcusdt@trade", 2, timeout=FAST["handshake_timeout"] + 3)
    exchange.answer_control(True)
    assert exchange.wait_until(lambda: exchange.stats("ethusdt@trade").open == 1)
