"""The fault matrix: a real fault-injecting proxy and server between wsmanager and the exchange."""

from __future__ import annotations

import itertools
import os
import random
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from conftest import FAST, SCALE, Recorder, flows, wait_for

from wsmanager import WSManager
from wsmanager.testing import FakeExchange
from wsmanager.testing.faultproxy import FaultProxy, Mode

TRADE = "btcusdt@trade"
MakeManager = Callable[..., WSManager]


@pytest.fixture
def proxy(exchange: FakeExchange) -> Iterator[FaultProxy]:
    with FaultProxy(exchange.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def proxied(proxy: FaultProxy, make_manager: MakeManager) -> MakeManager:
    def make(**options: Any) -> WSManager:
        return make_manager(url=f"ws://127.0.0.1:{proxy.port}/ws/", **options)

    return make


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("fault", ["cut", "reset"])
def test_proxy_cut_and_reset_reconnect(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager, fault: str
) -> None:
    manager = proxied()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert flows(exchange, recorder)
    assert getattr(proxy, fault)() == 1
    assert exchange.wait_for_attempts(TRADE, 2)
    assert flows(exchange, recorder)
    assert recorder.errors == []


def test_blackhole_is_detected_within_the_ping_bound(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager
) -> None:
    manager = proxied()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert flows(exchange, recorder)
    started = time.monotonic()
    proxy.set_mode(Mode.BLACKHOLE, new=False)
    assert exchange.wait_for_attempts(TRADE, 2, timeout=5 * SCALE)
    detected = time.monotonic() - started
    bound = manager.config.ping_interval + 2 * manager.config.ping_timeout
    print(f"blackhole detected in {detected:.3f}s (bound {bound:.2f}s)")
    assert detected <= bound + 0.3 * SCALE, (detected, bound)
    assert flows(exchange, recorder)


def test_frames_sliced_into_one_byte_writes(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager
) -> None:
    proxy.set_mode(Mode.SLICE)
    manager = proxied()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    big = {"e": "trade", "blob": "x" * 5000}
    exchange.publish(TRADE, big)
    exchange.send_raw(TRADE, ['{"part":', '"one",', '"n":2}'])  # a fragmented message
    assert recorder.wait_messages(2)
    assert recorder.messages == [big, {"part": "one", "n": 2}]


def test_latency_and_limited_bandwidth_do_not_break_the_link(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager
) -> None:
    proxy.set_latency(0.05)
    proxy.set_bandwidth(20_000)
    manager = proxied()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    for _ in range(10):
        exchange.publish(TRADE)
    assert recorder.wait_messages(10)
    assert exchange.stats(TRADE).accepted == 1


def test_refused_connections_are_retried_without_a_tight_loop(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager
) -> None:
    proxy.refuse()
    manager = proxied(max_retry_attempts=None)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert wait_for(lambda: proxy.accepted >= 3)
    window_start, accepted_before = time.monotonic(), proxy.accepted
    assert wait_for(lambda: time.monotonic() - window_start >= 1.0, 2)
    per_second = (proxy.accepted - accepted_before) / (time.monotonic() - window_start)
    print(f"refused: {per_second:.1f} attempts/s")
    assert per_second < 40  # the mean backoff here is ~0.1 s; a tight loop would be thousands
    proxy.refuse(False)
    assert flows(exchange, recorder)


@pytest.mark.parametrize("code", [1000, 1001, 1011])
def test_close_frames_from_the_server_are_retried(
    exchange: FakeExchange, make_manager: MakeManager, code: int
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert flows(exchange, recorder)
    exchange.drop(TRADE, code=code)
    assert exchange.wait_for_attempts(TRADE, 2)
    assert flows(exchange, recorder)
    assert recorder.errors == []


@pytest.mark.parametrize("fragmented", [False, True])
def test_an_oversized_message_is_refused_with_1009_and_the_stream_reconnects(
    exchange: FakeExchange, make_manager: MakeManager, fragmented: bool
) -> None:
    manager = make_manager(max_message_size=1000)
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    assert exchange.wait_for_open(TRADE, 1)
    if fragmented:
        exchange.send_raw(TRADE, ['{"blob":"', "y" * 600, "y" * 600, '"}'])
    else:
        exchange.publish(TRADE, {"blob": "x" * 2000})
    assert exchange.wait_for_attempts(TRADE, 2)
    assert exchange.wait_until(lambda: 1009 in exchange.close_codes(TRADE))
    assert flows(exchange, recorder)
    assert all("blob" not in m for m in recorder.messages)
    assert manager.get_metrics().oversized_messages == 1
    assert manager.get_stream_info()[0].oversized_messages == 1


def test_many_streams_dropped_at_once_reconnect_spread_by_jitter(
    exchange: FakeExchange, make_manager: MakeManager
) -> None:
    manager = make_manager(base_retry_delay=0.5, max_retry_delay=2.0)
    streams = [f"s{i}@trade" for i in range(20)]
    for stream in streams:
        manager.subscribe(stream, Recorder())
    assert exchange.wait_until(lambda: exchange.open_connections() == 20)
    dropped_at = time.monotonic()
    exchange.drop()
    assert exchange.wait_until(lambda: all(exchange.stats(s).attempts >= 2 for s in streams))
    delays = [exchange.attempt_times(s)[1] - dropped_at for s in streams]
    print(
        f"20 streams dropped at once: first retries spread over "
        f"{max(delays) - min(delays):.3f}s (stdev {statistics.pstdev(delays):.3f}s)"
    )
    # Full jitter: the first retry waits uniform(0, 0.5). Not a thundering herd:
    assert max(delays) - min(delays) > 0.2
    assert statistics.pstdev(delays) > 0.05
    assert max(delays) < 0.5 + 0.5 * SCALE


@pytest.mark.timeout(120)
def test_fifty_faults_across_ten_streams_lose_nobody(
    exchange: FakeExchange, proxy: FaultProxy, proxied: MakeManager
) -> None:
    threads_before, fds_before = threading.active_count(), _open_fds()
    manager = proxied(max_retry_attempts=None)
    streams = [f"s{i}@trade" for i in range(10)]
    arrivals: dict[tuple[str, int], list[float]] = {}
    lock = threading.Lock()

    def recorder(key: tuple[str, int]) -> Callable[[Any], None]:
        def on_message(message: Any) -> None:
            with lock:
                arrivals.setdefault(key, []).append(time.monotonic())

        return on_message

    for stream in streams:
        for n in range(3):
            manager.subscribe(stream, recorder((stream, n)))
    exchange.set_rate(40)
    assert exchange.wait_until(lambda: exchange.open_connections() == 10)
    rng = random.Random(1)
    started = time.monotonic()
    for _ in range(50):
        fault = rng.choice(["cut", "reset", "drop"])
        if fault == "drop":
            exchange.drop(rng.choice(streams))
        else:
            getattr(proxy, fault)()
        time.sleep(0.15)  # pacing the faults (not waiting for anything): 50 faults in ~8 s
    last_fault = time.monotonic()
    recovery = FAST["max_retry_delay"] + FAST["handshake_timeout"]
    assert wait_for(
        lambda: all(arrivals.get((s, n), [0])[-1] > last_fault for s in streams for n in range(3)),
        recovery + 2,
    )
    exchange.set_rate(0)
    gaps = [max(b - a for a, b in itertools.pairwise(times)) for times in arrivals.values()]
    assert len(arrivals) == 30  # 0 subscriptions lost
    assert max(gaps) <= recovery + 0.5 * SCALE, max(gaps)
    print(
        f"50 faults in {last_fault - started:.1f}s; max gap {max(gaps):.3f}s; "
        f"reconnects {manager.get_metrics().retry_count}"
    )
    manager.destroy()
    assert wait_for(lambda: threading.active_count() <= threads_before)
    assert wait_for(lambda: _open_fds() <= fds_before)
