"""User data subscriptions survive every kind of cut: each window without one is one Gap."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("cryptography")

from conftest import SCALE, Recorder, wait_for
from userdata_helpers import HMAC_KEY, HMAC_SECRET, event, methods

from wsmanager import WSManager
from wsmanager.core.state import Gap
from wsmanager.testing import FakeExchange

OTHER_KEY = "OtherApiKey77"
OTHER_SECRET = "other-SECRET-do-not-leak-91b2"


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(ws_api=True) as fake:
        fake.add_account(HMAC_KEY, secret=HMAC_SECRET)
        fake.add_account(OTHER_KEY, secret=OTHER_SECRET)
        yield fake


class Watch:
    """One manager with two accounts, their events and the gaps it reports."""

    def __init__(self, manager: WSManager, exchange: FakeExchange) -> None:
        self.exchange = exchange
        self.manager = manager
        self.gaps: list[Gap] = []
        manager.on_gap(self.gaps.append)
        self.mine, self.other = Recorder(), Recorder()
        url = exchange.ws_api_url
        manager.user_data(self.mine, api_key=HMAC_KEY, api_secret=HMAC_SECRET, ws_api_url=url)
        manager.user_data(self.other, api_key=OTHER_KEY, api_secret=OTHER_SECRET, ws_api_url=url)
        assert self.subscribed()
        self.sent = 0

    def subscribed(self, connections: int = 1) -> bool:
        def check() -> bool:
            found = self.exchange.user_subscriptions()
            carrying = [keys for keys in found.values() if keys]
            return len(carrying) == connections and all(
                sorted(keys) == sorted([HMAC_KEY, OTHER_KEY]) for keys in carrying
            )

        return wait_for(check)

    def flows(self) -> None:
        """An event for each account reaches its callback, once."""
        self.sent += 1
        self.exchange.push_user_event(HMAC_KEY, event(self.sent))
        self.exchange.push_user_event(OTHER_KEY, event(self.sent, "balanceUpdate"))
        assert self.mine.wait_messages(self.sent) and self.other.wait_messages(self.sent)
        assert self.mine.messages == [event(n) for n in range(1, self.sent + 1)]
        assert self.other.messages == [event(n, "balanceUpdate") for n in range(1, self.sent + 1)]


@pytest.fixture
def watch(exchange: FakeExchange, make_manager: Callable[..., WSManager]) -> Watch:
    watch = Watch(make_manager(), exchange)
    watch.flows()
    return watch


def _one_gap_per_account(watch: Watch) -> None:
    assert wait_for(lambda: len(watch.gaps) == 2)
    assert all(gap.stream == "userData" and gap.after_reconnect for gap in watch.gaps)
    assert all(gap.expected <= gap.received for gap in watch.gaps)
    assert watch.manager.get_metrics().user_data_gaps == 2


def test_a_drop_resubscribes_both_accounts_with_one_gap_each(watch: Watch) -> None:
    assert watch.exchange.drop() == 1
    assert watch.subscribed()
    watch.flows()
    _one_gap_per_account(watch)
    watch.flows()
    assert len(watch.gaps) == 2


def test_event_stream_terminated_resubscribes_on_the_same_connection(watch: Watch) -> None:
    assert watch.exchange.terminate_user_stream(HMAC_KEY) == 1
    assert wait_for(lambda: len(methods(watch.exchange, "userDataStream.subscribe.signature")) == 3)
    assert watch.subscribed()
    watch.flows()  # eventStreamTerminated itself is not delivered
    assert wait_for(lambda: len(watch.gaps) == 1)
    assert watch.gaps[0].stream == "userData"
    assert len(watch.exchange.connections()) == 1  # same connection


def test_server_shutdown_hands_over_before_the_close_without_a_gap(watch: Watch) -> None:
    assert watch.exchange.server_shutdown(close_after=2 * SCALE) == 1
    # The successor subscribes both accounts, then the old connection closes.
    assert wait_for(lambda: len(watch.exchange.connections(open_only=False)) == 2)
    assert watch.subscribed(connections=1)
    assert wait_for(lambda: len(watch.exchange.connections()) == 1)
    watch.flows()
    assert watch.gaps == []
    assert watch.manager.get_metrics().user_data_gaps == 0


def test_server_shutdown_then_an_abrupt_close_reports_the_window(watch: Watch) -> None:
    watch.exchange.answer_ws_api(False)  # the successor's subscriptions are never confirmed
    watch.exchange.server_shutdown()
    assert wait_for(lambda: len(watch.exchange.connections()) == 2)
    watch.exchange.answer_ws_api(True)
    # both go before the successor could take over: one window per account
    watch.exchange.drop()
    assert watch.subscribed()
    watch.flows()
    _one_gap_per_account(watch)


def test_rotation_at_max_connection_age_is_make_before_break(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    watch = Watch(make_manager(max_connection_age=1.0 * SCALE), exchange)
    watch.flows()
    assert wait_for(lambda: len(exchange.connections(open_only=False)) >= 2, timeout=5)
    assert watch.subscribed()
    assert wait_for(lambda: len(exchange.connections()) == 1)
    watch.flows()
    assert watch.gaps == []
    metrics = watch.manager.get_metrics()
    assert metrics.user_data_gaps == 0


def test_unhealthy_while_an_account_has_no_subscription(watch: Watch) -> None:
    watch.exchange.stop_listening()
    limit = watch.manager.config.max_retry_delay
    assert wait_for(lambda: not watch.manager.health().healthy, timeout=limit * 4 + 2)
    reasons: Any = watch.manager.health().reasons
    assert any("user data of account Hmac…" in reason for reason in reasons)
    assert all(HMAC_KEY not in reason for reason in reasons)
    watch.exchange.start_listening()
    assert watch.subscribed()
    assert wait_for(lambda: watch.manager.health().healthy)
    watch.flows()


def test_an_event_both_connections_carry_during_a_handover_is_delivered_once(
    watch: Watch,
) -> None:
    exchange = watch.exchange
    # The successor's first subscribe (the first account's) is refused for a while: meanwhile
    # the other account is live on both connections, and both deliver its events.
    exchange.refuse_user_data(429, -1003, retry_after=1.0 * SCALE)
    exchange.server_shutdown()
    assert wait_for(lambda: exchange.user_subscription_count(OTHER_KEY) == 2)
    assert exchange.user_subscription_count(HMAC_KEY) == 1
    watch.flows()  # the other account's event reaches two connections, its callback once
    assert watch.subscribed()  # the retry: both accounts on the successor, the old one closed
    assert wait_for(lambda: len(exchange.connections()) == 1)
    watch.flows()
    assert watch.gaps == []


def test_a_server_shutdown_flood_costs_one_handover(watch: Watch) -> None:
    for _ in range(40):  # every 50 ms for 2 s
        watch.exchange.server_shutdown()
        time.sleep(0.05)  # the flood's own pace, not a wait for the code under test
    assert watch.subscribed()
    watch.flows()
    assert len(watch.exchange.connections(open_only=False)) <= 2  # the first and its successor
    assert watch.exchange.total_attempts() <= 2
