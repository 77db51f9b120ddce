"""WSManager against the fake exchange on loopback: sharing, delivery, lifecycle, status."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SCALE, Recorder, wait_for

from wsmanager import (
    ConnectionState,
    InvalidStreamNameError,
    ManagerClosedError,
    WSManager,
)
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


def test_subscribers_of_one_stream_share_one_connection(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    first, second = Recorder(), Recorder()
    unsubscribe_first = manager.subscribe(TRADE, first)
    unsubscribe_second = manager.subscribe(TRADE, second)
    assert exchange.wait_for_open(TRADE, 1)
    assert exchange.publish(TRADE) == 1
    assert first.wait_messages(1) and second.wait_messages(1)
    assert first.messages[0]["e"] == "trade" and first.messages[0] is second.messages[0]
    assert exchange.stats(TRADE).accepted == 1
    assert manager.get_metrics().subscribers == 2

    unsubscribe_first()
    unsubscribe_first()  # idempotent
    exchange.publish(TRADE)
    assert second.wait_messages(2)
    assert len(first.messages) == 1
    assert manager.get_active_streams_count() == 1

    unsubscribe_second()
    assert exchange.wait_for_open(TRADE, 0)
    assert manager.get_active_streams_count() == 0
    assert wait_for(lambda: manager.get_metrics().active_connections == 0)
    metrics = manager.get_metrics()
    assert (metrics.stream_creations, metrics.stream_cleanups) == (1, 1)
    assert metrics.active_connections_hwm == 1


def test_callbacks_run_on_the_stream_thread_in_subscription_order(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    order: list[str] = []
    threads: set[str] = set()
    done = threading.Event()

    def make(tag: str) -> Callable[[Any], None]:
        def callback(message: Any) -> None:
            order.append(tag)
            threads.add(threading.current_thread().name)
            if tag == "c" and message["t"] == 3:
                done.set()

        return callback

    for tag in "abc":
        manager.subscribe(TRADE, make(tag))
    assert exchange.wait_for_open(TRADE, 1)
    for _ in range(3):
        exchange.publish(TRADE)
    assert done.wait(5 * SCALE)
    assert order == list("abc") * 3
    assert threads == {f"wsmanager-dispatch-{TRADE}"}


def test_streams_are_shared_by_exact_name(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    manager.subscribe("btcusdt@miniTicker", Recorder())
    manager.subscribe("BTCUSDT@miniTicker", Recorder())
    assert exchange.wait_for_open("btcusdt@miniTicker", 1)
    assert exchange.wait_for_open("BTCUSDT@miniTicker", 1)
    assert manager.get_active_streams_count() == 2


def test_twenty_racing_subscribers_open_one_connection(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    barrier = threading.Barrier(20)
    recorders = [Recorder() for _ in range(20)]

    def subscribe(recorder: Recorder) -> None:
        barrier.wait()
        manager.subscribe(TRADE, recorder)

    threads = [threading.Thread(target=subscribe, args=(r,)) for r in recorders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert all(r.wait_messages(1) for r in recorders)
    assert exchange.stats(TRADE).attempts == 1
    assert manager.get_stream_info()[0].subscribers == 20


def test_subscribe_storm_from_sixteen_threads_leaves_nothing(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    baseline = threading.active_count()
    streams = [f"s{i}@trade" for i in range(4)]

    def storm(seed: int) -> None:
        rng = random.Random(seed)
        held: list[Callable[[], None]] = []
        for _ in range(150):
            if held and rng.random() < 0.5:
                held.pop(rng.randrange(len(held)))()
            else:
                held.append(manager.subscribe(rng.choice(streams), lambda m: None))
        for unsubscribe in held:
            unsubscribe()

    workers = [threading.Thread(target=storm, args=(seed,)) for seed in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert manager.get_active_streams_count() == 0
    assert manager.get_metrics().subscribers == 0
    assert wait_for(lambda: exchange.open_connections() == 0)
    assert wait_for(lambda: manager.get_metrics().active_connections == 0)
    assert wait_for(lambda: threading.active_count() <= baseline)
    metrics = manager.get_metrics()
    assert metrics.stream_creations == metrics.stream_cleanups > 0


def test_unsubscribe_and_destroy_from_inside_a_callback(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    calls = Recorder()
    handles: dict[str, Callable[[], None]] = {}

    def unsubscribe_self(message: Any) -> None:
        calls(message)
        handles["self"]()

    handles["self"] = manager.subscribe(TRADE, unsubscribe_self)
    other = Recorder()
    manager.subscribe(TRADE, other)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    exchange.publish(TRADE)
    assert other.wait_messages(2)
    assert len(calls.messages) == 1

    destroyed = threading.Event()

    def destroy_from_callback(message: Any) -> None:
        manager.destroy()
        destroyed.set()

    manager.subscribe("ethusdt@trade", destroy_from_callback, on_complete=other.on_complete)
    assert exchange.wait_for_open("ethusdt@trade", 1)
    exchange.publish("ethusdt@trade")
    assert destroyed.wait(5 * SCALE)
    assert manager.destroyed
    assert exchange.wait_until(lambda: exchange.open_connections() == 0)


def test_destroy_completes_everyone_and_refuses_new_subscriptions(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    recorders = [Recorder() for _ in range(3)]
    for i, recorder in enumerate(recorders):
        manager.subscribe(f"s{i % 2}@trade", recorder, recorder.on_error, recorder.on_complete)
    assert exchange.wait_until(lambda: exchange.open_connections() == 2)
    manager.destroy()
    assert [r.completed for r in recorders] == [1, 1, 1]  # before destroy returned
    assert not [
        t
        for t in threading.enumerate()
        if t.name.startswith("wsmanager-") and t.name != "wsmanager-fake-exchange"
    ]
    manager.destroy()  # idempotent
    with pytest.raises(ManagerClosedError):
        manager.subscribe(TRADE, Recorder())
    assert manager.health().healthy is False
    assert manager.get_connection_status() is ConnectionState.DISCONNECTED


def test_context_manager_destroys(exchange: FakeExchange) -> None:
    with WSManager(url=exchange.url) as manager:
        manager.subscribe(TRADE, Recorder())
        assert exchange.wait_for_open(TRADE, 1)
    assert manager.destroyed
    assert exchange.wait_for_open(TRADE, 0)


def test_invalid_input_raises_before_any_connection(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    with pytest.raises(InvalidStreamNameError, match="whitespace"):
        manager.subscribe("btc usdt", Recorder())
    with pytest.raises(TypeError, match="callback must be callable"):
        manager.subscribe(TRADE, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_error must be callable"):
        manager.subscribe(TRADE, Recorder(), on_error="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="bogus"):
        WSManager(url=exchange.url, bogus=1)
    assert exchange.total_attempts() == 0
    assert manager.get_active_streams_count() == 0


def test_invalid_frames_are_skipped_and_counted(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.send_raw(TRADE, "{not json")
    exchange.send_raw(TRADE, b"\x00\x01binary")
    exchange.send_raw(TRADE, "[1, 2]")
    assert recorder.wait_messages(1)
    assert recorder.messages == [[1, 2]]
    metrics = manager.get_metrics()
    assert (metrics.messages_received, metrics.invalid_messages) == (3, 2)
    assert manager.get_stream_info()[0].reconnects == 0  # the stream carried on


def test_a_raising_callback_is_isolated(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager()
    healthy = Recorder()

    def broken(message: Any) -> None:
        raise RuntimeError("boom")

    manager.subscribe(TRADE, broken)
    manager.subscribe(TRADE, healthy)
    assert exchange.wait_for_open(TRADE, 1)
    for _ in range(5):
        exchange.publish(TRADE)
    assert healthy.wait_messages(5)
    assert manager.get_metrics().callback_errors == 5
    assert exchange.stats(TRADE).accepted == 1


def test_a_slow_callback_does_not_make_the_link_look_dead(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    ping_timeout = manager.config.ping_timeout
    finished = threading.Event()

    def slow(message: Any) -> None:
        time.sleep(3 * ping_timeout + manager.config.ping_interval)
        finished.set()

    manager.subscribe(TRADE, slow)
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert finished.wait(10 * SCALE)
    assert exchange.stats(TRADE).accepted == 1
    assert manager.get_stream_info()[0].retry_attempt == 0


def test_buffer_is_bounded_and_drops_the_oldest(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(max_buffered_messages=10)
    gate = threading.Event()
    seen: list[int] = []

    def blocked(message: Any) -> None:
        gate.wait(10 * SCALE)
        seen.append(message["n"])

    manager.subscribe(TRADE, blocked)
    assert exchange.wait_for_open(TRADE, 1)
    for n in range(100):
        exchange.publish(TRADE, {"n": n})
    assert wait_for(lambda: manager.get_metrics().messages_received == 100)
    info = manager.get_stream_info()[0]
    assert info.buffered_messages <= 10
    gate.set()
    assert wait_for(lambda: seen and seen[-1] == 99)
    assert len(seen) <= 20  # at most one batch in hand (<= 10) + the newest 10
    assert seen[-10:] == list(range(90, 100))
    assert manager.get_metrics().dropped_messages == 100 - len(seen)
    assert exchange.stats(TRADE).accepted == 1  # the connection lived on


def test_connection_status_feed(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager()
    states: list[ConnectionState] = []
    changed = threading.Condition()

    def record(state: ConnectionState) -> None:
        with changed:
            states.append(state)
            changed.notify_all()

    unsubscribe_status = manager.on_connection_status(record)
    assert states == [ConnectionState.DISCONNECTED]  # at once, on this thread
    unsubscribe = manager.subscribe(TRADE, Recorder())
    with changed:
        assert changed.wait_for(lambda: states[-1] is ConnectionState.CONNECTED, 5 * SCALE)
    assert manager.get_connection_status() is ConnectionState.CONNECTED
    exchange.drop(TRADE)
    assert wait_for(lambda: manager.get_stream_info()[0].reconnects == 1)
    with changed:  # every change is delivered, however quick the reconnect was
        assert changed.wait_for(lambda: len(states) >= 5 and states[-1] == "connected", 5 * SCALE)
    unsubscribe()
    with changed:
        assert changed.wait_for(lambda: states[-1] is ConnectionState.DISCONNECTED, 5 * SCALE)
    assert all(a is not b for a, b in itertools.pairwise(states))  # never twice in a row
    assert states[:3] == ["disconnected", "connecting", "connected"]
    unsubscribe_status()
    manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    count = len(states)
    manager.destroy()
    assert len(states) == count


def test_stream_info(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager()
    before = time.time()
    manager.subscribe(TRADE, Recorder())
    manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    exchange.publish(TRADE)
    assert wait_for(lambda: manager.get_stream_info()[0].messages_received == 1)
    (info,) = manager.get_stream_info()
    assert info.name == TRADE and info.url == exchange.url + TRADE
    assert info.subscribers == 2 and info.state is ConnectionState.CONNECTED
    assert before <= info.created_at <= info.last_message_at <= time.time()  # type: ignore[operator]
    assert (info.retry_attempt, info.reconnects) == (0, 0)


def test_idle_streams_are_cleaned_and_told(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(idle_timeout=0.3 * SCALE, cleanup_interval=0.1 * SCALE)
    quiet, busy = Recorder(), Recorder()
    manager.subscribe("quiet@trade", quiet, quiet.on_error, quiet.on_complete)
    manager.subscribe("busy@trade", busy, busy.on_error, busy.on_complete)
    assert exchange.wait_for_open("quiet@trade", 1) and exchange.wait_for_open("busy@trade", 1)
    deadline = time.monotonic() + 1.0 * SCALE
    while time.monotonic() < deadline:  # keep one stream busy while the sweep runs
        exchange.publish("busy@trade")
        if quiet.completed:
            break
        time.sleep(0.05)
    assert quiet.wait(lambda r: r.completed == 1)
    assert busy.completed == 0
    assert [i.name for i in manager.get_stream_info()] == ["busy@trade"]
    assert exchange.wait_for_open("quiet@trade", 0)


def test_force_cleanup_idle_streams(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager(idle_timeout=None)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, on_complete=recorder.on_complete)
    assert exchange.wait_for_open(TRADE, 1)
    assert manager.force_cleanup_idle_streams() == 0  # idle_timeout None: never idle
    assert manager.force_cleanup_idle_streams(60) == 0
    assert manager.force_cleanup_idle_streams(0) == 1
    assert recorder.wait(lambda r: r.completed == 1)
    assert manager.get_active_streams_count() == 0
    with pytest.raises(ValueError, match="idle_timeout"):
        manager.force_cleanup_idle_streams(-1)


def test_unsubscribe_after_the_stream_ended_is_a_no_op(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager()
    unsubscribe = manager.subscribe(TRADE, Recorder())
    assert exchange.wait_for_open(TRADE, 1)
    manager.force_cleanup_idle_streams(0)
    again = manager.subscribe(TRADE, Recorder())
    unsubscribe()  # the old handle must not end the new stream
    assert manager.get_active_streams_count() == 1
    again()
    assert manager.get_active_streams_count() == 0


def test_retry_delay_preview_uses_the_configuration(make_manager: MakeManager) -> None:
    manager = make_manager(base_retry_delay=1.0, max_retry_delay=30.0)
    info = manager.get_retry_delay_preview(5)
    assert (info.exponential_delay, info.capped_delay) == (32.0, 30.0)
    with pytest.raises(ValueError, match="attempt"):
        manager.get_retry_delay_preview(-1)


def test_an_idle_stream_costs_one_thread(exchange: FakeExchange, make_manager: MakeManager) -> None:
    manager = make_manager()
    before = {t.name for t in threading.enumerate()}
    recorder = Recorder()
    manager.subscribe("idle@trade", recorder)
    assert exchange.wait_for_open("idle@trade", 1)
    assert wait_for(lambda: manager.get_connection_status() is ConnectionState.CONNECTED)
    new = {t.name for t in threading.enumerate()} - before
    assert new == {"wsmanager-reader-idle@trade"}  # no ping thread, no dispatcher yet
    exchange.publish("idle@trade")
    assert recorder.wait_messages(1)
    assert "wsmanager-dispatch-idle@trade" in {t.name for t in threading.enumerate()}
