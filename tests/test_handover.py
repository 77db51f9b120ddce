"""The handover as one state machine (issue 17, findings 1-4 and part of 13): whatever fails in a
make-before-break handover, every stream ends up on one live connection or its subscribers are
told; counters count once; serverShutdown floods cannot spend the budget; a refused stream can be
subscribed again; streams without sequence numbers switch by event time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from conftest import SCALE, Recorder, wait_for

from wsmanager import ConnectionState, Gap, WSManager
from wsmanager.engine.handover import Event, Handover, IllegalMove, Phase
from wsmanager.net import connection as connection_module
from wsmanager.testing import BINANCE_SPOT_RULES, FakeExchange

# Liveness relaxed where a spurious reconnect under a loaded machine would change the story
# (the old connection dropping mid-handover is a case of its own).
STEADY = {"ping_interval": 5.0 * SCALE, "ping_timeout": 2.0 * SCALE}


def _flows(exchange: FakeExchange, recorder: Recorder, stream: str, timeout: float = 5.0) -> bool:
    """Messages of ``stream`` reach ``recorder`` again (publishing until they do, bounded)."""
    count = len(recorder.messages) + 1
    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        exchange.publish(stream)
        if recorder.wait(lambda r: len(r.messages) >= count, 0.05):
            return True
    return False


# -- the table itself (pure) -------------------------------------------------------------------


def test_the_handover_table_allows_only_its_moves() -> None:
    handover: Handover[str] = Handover("old", "new", "test", started_at=0.0)
    with pytest.raises(IllegalMove):
        handover.move(Event.ALL_SWITCHED, 1.0)  # nothing switches before the replacement opens
    assert handover.move(Event.REPLACEMENT_OPEN, 1.0) is Phase.OPEN
    assert handover.deadline() is not None
    assert handover.move(Event.REPLACEMENT_LOST, 2.0) is Phase.ABANDONED
    assert handover.final
    for event in Event:
        assert not handover.can(event)  # final: no move out


# -- finding 1: a failed handover leaves no zombie -----------------------------------------------


def test_a_replacement_refused_for_good_leaves_the_old_connection_reconnecting(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange() as exchange:
        manager = manager_for(exchange, max_retry_attempts=2, **STEADY)
        trades, errors = Recorder(), Recorder()
        manager.subscribe("btcusdt@trade", trades, errors.on_error)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.reject(503)  # maintenance: every new handshake refused
        exchange.server_shutdown(enveloped=True)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        # the replacement's two attempts fail: the handover is abandoned, the old one carries on
        assert wait_for(lambda: manager.get_metrics().connection_attempts >= 3)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.accept_normally()
        exchange.drop()  # the old connection's next drop is reconnected as usual
        assert _flows(exchange, trades, "btcusdt@trade")
        assert manager.get_connection_status() is ConnectionState.CONNECTED
        late = Recorder()
        manager.subscribe("ethusdt@trade", late)  # joins a live group, not a dead one
        assert _flows(exchange, late, "ethusdt@trade")
        assert errors.errors == []
        assert wait_for(lambda: len(exchange.connections()) == 1)


def test_the_old_connection_dropping_mid_handover_promotes_the_replacement(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange() as exchange:
        manager = manager_for(exchange, max_retry_attempts=None)
        trades, errors = Recorder(), Recorder()
        manager.subscribe("btcusdt@trade", trades, errors.on_error)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.reject(503)
        exchange.server_shutdown(enveloped=True)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        exchange.drop()  # maintenance begins: the old connection goes, the replacement retries
        assert wait_for(lambda: manager.get_connection_status() is ConnectionState.CONNECTING, 2)
        exchange.accept_normally()
        assert _flows(exchange, trades, "btcusdt@trade")
        assert manager.get_connection_status() is ConnectionState.CONNECTED
        assert errors.errors == []
        assert wait_for(lambda: len(exchange.connections()) == 1)


def test_rotation_is_asked_again_after_an_abandoned_handover(
    manager_for: Callable[..., WSManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wsmanager.engine import groups as groups_module

    monkeypatch.setattr(groups_module, "REARM_AFTER", 0.5)
    with FakeExchange() as exchange:
        manager = manager_for(exchange, max_retry_attempts=1, max_connection_age=1.0, **STEADY)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.reject(503)
        assert wait_for(lambda: manager.get_metrics().rotations >= 1, 5)
        exchange.accept_normally()
        # the first replacement failed; the old connection asks again and the second succeeds
        assert wait_for(lambda: manager.get_metrics().rotations >= 2, 5)
        first = {c.id for c in exchange.connections()}
        assert wait_for(lambda: {c.id for c in exchange.connections()} != first, 5)
        assert _flows(exchange, trades, "btcusdt@trade")


def test_a_replacement_that_never_opens_is_abandoned_in_time(
    manager_for: Callable[..., WSManager],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Retrying for ever (max_retry_attempts=None) while the old connection stays healthy: the
    handover ends after OPEN_WITHIN instead of trying once per backoff window until the old
    connection drops."""
    from wsmanager.engine import handover as handover_module

    monkeypatch.setattr(handover_module, "OPEN_WITHIN", 0.5 * SCALE)

    def readers() -> int:
        return sum(t.name.startswith("wsmanager-reader") for t in threading.enumerate())

    with FakeExchange() as exchange:
        manager = manager_for(exchange, max_retry_attempts=None, **STEADY)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.hang_handshakes()  # the replacement never opens
        exchange.server_shutdown(enveloped=True)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        assert wait_for(lambda: "did not open in time" in caplog.text, 5)
        assert wait_for(lambda: readers() == 1, 5)  # the replacement's thread ended
        assert _flows(exchange, trades, "btcusdt@trade")  # the old connection carries on
        assert manager.get_connection_status() is ConnectionState.CONNECTED
        assert manager.get_metrics().rotations == 1  # asked again only after REARM_AFTER


# -- finding 2: counters once; unsequenced streams switch by E -----------------------------------


def test_unsubscribing_during_a_handover_counts_every_message_once(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange() as exchange:
        manager = manager_for(exchange)
        trades = Recorder()
        unsubscribe = manager.subscribe("btcusdt@trade", trades)
        for _ in range(20):
            assert _flows(exchange, trades, "btcusdt@trade")
        exchange.hang_handshakes()  # the replacement never opens
        exchange.server_shutdown(enveloped=True)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        before = manager.get_metrics().messages_received
        unsubscribe()
        assert wait_for(lambda: manager.get_metrics().active_connections == 0)
        assert wait_for(
            lambda: not any(t.name.startswith("wsmanager-reader") for t in threading.enumerate())
        )
        after = manager.get_metrics().messages_received
        assert after == before, (before, after)
        exchange.accept_normally()


def test_received_counts_what_the_stream_got_not_the_handovers_copies(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rate=50) as exchange:
        manager = manager_for(exchange, max_connection_age=0.6)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert wait_for(lambda: manager.get_metrics().rotations >= 3, 10)
        exchange.set_rate(0)
        assert wait_for(
            lambda: manager.get_stream_info()[0].messages_received == len(trades.messages)
        ), (manager.get_stream_info()[0].messages_received, len(trades.messages))
        manager.destroy()
    numbers = [m["t"] for m in trades.messages]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


def test_streams_without_sequence_numbers_switch_by_event_time(
    manager_for: Callable[..., WSManager],
) -> None:
    # markPrice on the spot fake: {"e", "E", "s", "seq"}; seq tells what was lost or repeated
    with FakeExchange(rate=20) as exchange:
        manager = manager_for(exchange, max_connection_age=0.6)
        marks = Recorder()
        manager.subscribe("btcusdt@markPrice", marks)
        assert wait_for(lambda: manager.get_metrics().rotations >= 5, 15)
        info = manager.get_stream_info()[0]
        received = info.messages_received
        delivered = len(marks.messages)
        manager.destroy()
    numbers = [m["seq"] for m in marks.messages]
    assert len(numbers) > 30
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert received >= delivered - 1  # counted once: never the second copies
    assert received <= delivered + 1


# -- finding 3: serverShutdown floods ------------------------------------------------------------


def test_a_server_shutdown_flood_cannot_spend_the_connection_budget(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rules=BINANCE_SPOT_RULES) as exchange:
        manager = manager_for(exchange)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert _flows(exchange, trades, "btcusdt@trade")
        for _ in range(60):  # every 50 ms for 3 s
            exchange.server_shutdown(enveloped=True)
            time.sleep(0.05)  # the flood's own pace, not a wait for the code under test
        assert manager.get_metrics().rotations == 1
        assert exchange.total_attempts() <= 2
        assert _flows(exchange, trades, "btcusdt@trade")
        manager.destroy()
        assert exchange.violations() == []


def test_a_server_shutdown_on_a_young_replacement_is_handled_once_it_is_old_enough(
    manager_for: Callable[..., WSManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    min_age = 2.0 * SCALE
    monkeypatch.setattr(connection_module, "SHUTDOWN_MIN_AGE", min_age)
    with FakeExchange() as exchange:
        manager = manager_for(exchange)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert _flows(exchange, trades, "btcusdt@trade")
        exchange.server_shutdown(enveloped=True)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        assert wait_for(lambda: len(exchange.connections()) == 2)
        assert _flows(exchange, trades, "btcusdt@trade")  # the stream switches: promoted
        assert wait_for(lambda: len(exchange.connections()) == 1)
        replaced_at = time.monotonic()
        exchange.server_shutdown(enveloped=True)  # reaches the young replacement
        assert not wait_for(lambda: manager.get_metrics().rotations > 1, 0.5)
        assert wait_for(lambda: manager.get_metrics().rotations == 2, 2 * min_age)  # handled
        assert time.monotonic() - replaced_at >= min_age / 2
        assert _flows(exchange, trades, "btcusdt@trade")


def test_every_trade_survives_shutdowns_and_handovers_in_order(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange(rate=50) as exchange:
        manager = manager_for(exchange)
        gaps: list[Gap] = []
        manager.on_gap(gaps.append)
        trades = Recorder()
        manager.subscribe("btcusdt@trade", trades)
        assert trades.wait_messages(10)
        exchange.server_shutdown(enveloped=True, close_after=1.0)
        assert wait_for(lambda: manager.get_metrics().rotations == 1)
        count = len(trades.messages)
        assert trades.wait_messages(count + 50)
        manager.destroy()
    numbers = [m["t"] for m in trades.messages]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert gaps == []


# -- finding 4: a refused stream can be subscribed again -----------------------------------------


def test_a_refused_stream_is_requested_again_when_subscribed_again(
    manager_for: Callable[..., WSManager],
) -> None:
    with FakeExchange() as exchange:
        manager = manager_for(exchange)
        anchor = Recorder()
        manager.subscribe("btcusdt@trade", anchor)
        assert _flows(exchange, anchor, "btcusdt@trade")
        exchange.refuse_stream("newcoin@trade", code=2, msg="Invalid request: unknown stream")
        first = Recorder()
        manager.subscribe("newcoin@trade", first, first.on_error)
        assert first.wait(lambda r: bool(r.errors))
        exchange.accept_stream("newcoin@trade")  # listed now
        second = Recorder()
        manager.subscribe("newcoin@trade", second, second.on_error)
        assert _flows(exchange, second, "newcoin@trade")
        assert second.errors == []
        assert len(exchange.connections()) == 1
