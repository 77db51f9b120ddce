"""WSManager.user_data: signed subscriptions through the WebSocket API of a real server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

from conftest import SCALE, Recorder, wait_for
from userdata_helpers import (
    HMAC_KEY,
    HMAC_SECRET,
    event,
    methods,
    new_ed25519,
    new_rsa,
    private_pem,
    public_pem,
)

from wsmanager import WSManager
from wsmanager.errors import ManagerClosedError, StreamRejectedError
from wsmanager.testing import FakeExchange

SUBSCRIBE = "userDataStream.subscribe.signature"


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(ws_api=True) as fake:
        fake.add_account(HMAC_KEY, secret=HMAC_SECRET)
        yield fake


def _subscribed(exchange: FakeExchange, api_key: str, count: int = 1) -> bool:
    return wait_for(lambda: exchange.user_subscription_count(api_key) == count)


def test_hmac_ed25519_and_rsa_accounts_get_their_events_in_order_on_one_connection(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], tmp_path: Path
) -> None:
    ed_bytes, ed_file, rsa_file = new_ed25519(), new_ed25519(), new_rsa()
    (tmp_path / "ed.pem").write_bytes(private_pem(ed_file))
    (tmp_path / "rsa.pem").write_bytes(private_pem(rsa_file))
    exchange.add_account("EdBytesKey01", public_key_pem=public_pem(ed_bytes))
    exchange.add_account("EdFileKey002", public_key_pem=public_pem(ed_file))
    exchange.add_account("RsaFileKey03", public_key_pem=public_pem(rsa_file))
    manager = make_manager()
    url = exchange.ws_api_url
    accounts = {
        HMAC_KEY: {"api_secret": HMAC_SECRET},
        "EdBytesKey01": {"private_key": private_pem(ed_bytes)},
        "EdFileKey002": {"private_key": str(tmp_path / "ed.pem")},
        "RsaFileKey03": {"private_key": tmp_path / "rsa.pem"},
    }
    recorders = {key: Recorder() for key in accounts}
    for key, secret in accounts.items():
        manager.user_data(recorders[key], api_key=key, ws_api_url=url, **secret)  # type: ignore[arg-type]

    def carried() -> list[str]:
        return sorted(key for keys in exchange.user_subscriptions().values() for key in keys)

    assert wait_for(lambda: carried() == sorted(accounts))
    assert len(exchange.user_subscriptions()) == 1  # every account on one connection
    for number in range(5):
        for key in accounts:
            assert exchange.push_user_event(key, event(number, key)) == 1
    for key, recorder in recorders.items():
        assert recorder.wait_messages(5)
        assert recorder.messages == [event(n, key) for n in range(5)]
    metrics = manager.get_metrics()
    assert metrics.user_data_connections == 1
    assert metrics.user_data_accounts == metrics.user_data_subscriptions == 4
    assert wait_for(lambda: manager.get_metrics().user_data_events == 20)
    assert manager.health().healthy
    text = manager.get_prometheus_metrics()
    assert "ws_manager_user_data_subscriptions" in text
    assert "ws_manager_user_data_events_total" in text


def test_calls_with_one_api_key_share_a_subscription_and_the_last_unsubscribe_ends_it(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    first, second = Recorder(), Recorder()
    options = {"api_key": HMAC_KEY, "api_secret": HMAC_SECRET, "ws_api_url": exchange.ws_api_url}
    stop_first = manager.user_data(first, **options)  # type: ignore[arg-type]
    stop_second = manager.user_data(second, **options)  # type: ignore[arg-type]
    assert _subscribed(exchange, HMAC_KEY)
    exchange.push_user_event(HMAC_KEY, event(1))
    assert first.wait_messages(1) and second.wait_messages(1)
    stop_first()
    stop_first()  # idempotent
    exchange.push_user_event(HMAC_KEY, event(2))
    assert second.wait_messages(2)
    assert len(methods(exchange, SUBSCRIBE)) == 1
    assert methods(exchange, "userDataStream.unsubscribe") == []
    stop_second()
    assert wait_for(lambda: len(methods(exchange, "userDataStream.unsubscribe")) == 1)
    assert methods(exchange, "userDataStream.unsubscribe")[0]["params"] == {"subscriptionId": 0}
    assert wait_for(lambda: exchange.open_connections() == 0)  # no account left: closed
    assert first.messages == [event(1)]
    assert manager.get_metrics().user_data_accounts == 0


@pytest.mark.parametrize(
    ("api_key", "secret", "code"),
    [(HMAC_KEY, "wrong-secret", -1022), ("UnknownKey99", HMAC_SECRET, -2015)],
)
def test_a_refusal_reaches_on_error_with_the_exchanges_code_after_one_attempt(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    api_key: str,
    secret: str,
    code: int,
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.user_data(
        recorder,
        api_key=api_key,
        api_secret=secret,
        on_error=recorder.on_error,
        ws_api_url=exchange.ws_api_url,
    )
    assert recorder.wait(lambda r: bool(r.errors))
    (error,) = recorder.errors
    assert isinstance(error, StreamRejectedError)
    assert error.code == code and error.stream == "userData"
    assert not wait_for(lambda: len(methods(exchange, SUBSCRIBE)) > 1, timeout=0.5)
    assert wait_for(lambda: exchange.open_connections() == 0)
    metrics = manager.get_metrics()
    assert metrics.user_data_rejections == 1 and metrics.user_data_accounts == 0


def test_a_clock_10s_off_is_measured_and_corrected_once(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    exchange.set_clock_offset(10)
    manager = make_manager()
    recorder = Recorder()
    manager.user_data(
        recorder,
        api_key=HMAC_KEY,
        api_secret=HMAC_SECRET,
        on_error=recorder.on_error,
        ws_api_url=exchange.ws_api_url,
    )
    assert _subscribed(exchange, HMAC_KEY)
    exchange.push_user_event(HMAC_KEY, event(1))
    assert recorder.wait_messages(1)
    assert [r["method"] for r in methods(exchange)] == [SUBSCRIBE, "time", SUBSCRIBE]
    assert recorder.errors == []


def test_arguments_are_checked_and_the_key_shown_masked(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    url = exchange.ws_api_url
    with pytest.raises(ValueError, match="exactly one of"):
        manager.user_data(print, api_key=HMAC_KEY, ws_api_url=url)
    with pytest.raises(ValueError, match="exactly one of") as caught:
        manager.user_data(print, api_key=HMAC_KEY, api_secret="x", private_key=b"y", ws_api_url=url)
    assert HMAC_KEY not in str(caught.value) and HMAC_KEY[:4] in str(caught.value)
    with pytest.raises(ValueError, match="not a PEM private key"):
        manager.user_data(print, api_key=HMAC_KEY, private_key=b"-----BEGIN junk", ws_api_url=url)
    with pytest.raises(ValueError, match="cannot be read"):
        manager.user_data(print, api_key=HMAC_KEY, private_key="/nonexistent.pem", ws_api_url=url)
    with pytest.raises(ValueError, match="ws_api_url"):
        manager.user_data(print, api_key=HMAC_KEY, api_secret=HMAC_SECRET)
    with pytest.raises(TypeError, match="callback"):
        manager.user_data(None, api_key=HMAC_KEY, api_secret="x", ws_api_url=url)  # type: ignore[arg-type]
    manager.destroy()
    with pytest.raises(ManagerClosedError):
        manager.user_data(print, api_key=HMAC_KEY, api_secret=HMAC_SECRET, ws_api_url=url)


def test_the_spot_endpoints_know_their_websocket_api() -> None:
    from wsmanager.endpoints import get_endpoint

    assert get_endpoint("spot").ws_api_url == "wss://ws-api.binance.com:443/ws-api/v3"
    assert (
        get_endpoint("spot-testnet").ws_api_url == "wss://ws-api.testnet.binance.vision/ws-api/v3"
    )
    assert get_endpoint("spot-data").ws_api_url is None


def test_destroy_ends_every_user_data_thread(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    manager = make_manager()
    recorder = Recorder()
    manager.user_data(
        recorder, api_key=HMAC_KEY, api_secret=HMAC_SECRET, ws_api_url=exchange.ws_api_url
    )
    assert _subscribed(exchange, HMAC_KEY)
    exchange.push_user_event(HMAC_KEY, event(1))
    assert recorder.wait_messages(1)
    manager.destroy()
    assert wait_for(lambda: exchange.open_connections() == 0, timeout=2 * SCALE)


def test_rate_limits_and_a_busy_server_are_tried_again_a_bounded_number_of_times(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    exchange.refuse_user_data(429, -1003, count=2)
    manager = make_manager()
    recorder = Recorder()
    options = {"api_key": HMAC_KEY, "api_secret": HMAC_SECRET, "ws_api_url": exchange.ws_api_url}
    manager.user_data(recorder, on_error=recorder.on_error, **options)  # type: ignore[arg-type]
    assert _subscribed(exchange, HMAC_KEY)
    assert len(methods(exchange, SUBSCRIBE)) == 3 and recorder.errors == []
    exchange.push_user_event(HMAC_KEY, event(1))
    assert recorder.wait_messages(1)

    exchange.refuse_user_data(503, -1008, "Server is currently overloaded", count=10)
    other = Recorder()
    exchange.add_account("BusyKey0001", secret="busy-secret")
    manager.user_data(
        other,
        api_key="BusyKey0001",
        api_secret="busy-secret",
        on_error=other.on_error,
        ws_api_url=exchange.ws_api_url,
    )
    assert other.wait(lambda r: bool(r.errors), timeout=10)
    assert isinstance(other.errors[0], StreamRejectedError) and other.errors[0].code == -1008
    assert len(methods(exchange, SUBSCRIBE)) == 3 + 4  # the first try and 3 retries, no more


def test_a_handshake_refused_for_good_reaches_on_error(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    from wsmanager.errors import HandshakeRejectedError

    exchange.reject(403)
    manager = make_manager()
    recorder = Recorder()
    manager.user_data(
        recorder,
        api_key=HMAC_KEY,
        api_secret=HMAC_SECRET,
        on_error=recorder.on_error,
        ws_api_url=exchange.ws_api_url,
    )
    assert recorder.wait(lambda r: bool(r.errors))
    (error,) = recorder.errors
    assert isinstance(error, HandshakeRejectedError) and error.status_code == 403
    assert exchange.total_attempts() == 1
    assert manager.get_metrics().user_data_accounts == 0


def test_retries_exhausted_reach_on_error(
    exchange: FakeExchange, make_manager: Callable[..., WSManager]
) -> None:
    from wsmanager.errors import RetriesExhaustedError

    exchange.reject(503)
    manager = make_manager(max_retry_attempts=3)
    recorder = Recorder()
    manager.user_data(
        recorder,
        api_key=HMAC_KEY,
        api_secret=HMAC_SECRET,
        on_error=recorder.on_error,
        ws_api_url=exchange.ws_api_url,
    )
    assert recorder.wait(lambda r: bool(r.errors))
    assert isinstance(recorder.errors[0], RetriesExhaustedError)
    assert exchange.total_attempts() == 3


def test_an_account_added_while_the_connection_opens_is_subscribed_once(
    exchange: FakeExchange, make_manager: Callable[..., WSManager], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is marked open just before its session hears of it: an account added in
    between is subscribed then, and the session must not subscribe it a second time (two
    SUBSCRIBEs; with a clock error the second answer refused the account for good)."""
    import threading

    from wsmanager.userdata.session import UserDataSession

    other_key, other_secret = "HmacOtherKey987654321", "another-secret"
    exchange.add_account(other_key, secret=other_secret)
    entered, release = threading.Event(), threading.Event()
    original = UserDataSession.opened

    def opened_late(self: UserDataSession, connection: object) -> None:
        entered.set()
        release.wait(10)
        original(self, connection)  # type: ignore[arg-type]

    monkeypatch.setattr(UserDataSession, "opened", opened_late)
    manager = make_manager()
    first, second = Recorder(), Recorder()
    url = exchange.ws_api_url
    manager.user_data(first, api_key=HMAC_KEY, api_secret=HMAC_SECRET, ws_api_url=url)
    assert entered.wait(5 * SCALE)  # the socket is open; the session has not heard yet
    manager.user_data(second, api_key=other_key, api_secret=other_secret, ws_api_url=url)
    release.set()
    assert _subscribed(exchange, HMAC_KEY) and _subscribed(exchange, other_key)
    exchange.push_user_event(other_key, event(1))
    assert second.wait_messages(1)
    asked = [r["params"]["apiKey"] for r in methods(exchange, SUBSCRIBE)]
    assert sorted(asked) == sorted([HMAC_KEY, other_key]), asked
