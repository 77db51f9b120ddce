"""No secret, private key or signature is ever written anywhere: logs at DEBUG, repr, errors,
metrics, stream info, health."""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("cryptography")

from conftest import Recorder, wait_for
from userdata_helpers import (
    HMAC_KEY,
    HMAC_SECRET,
    event,
    methods,
    new_ed25519,
    private_pem,
    public_pem,
)

from wsmanager import WSManager
from wsmanager.userdata import Credentials

ED_KEY = "EdSecretTestKey5"


@pytest.fixture
def exchange() -> Iterator:  # type: ignore[type-arg]
    from wsmanager.testing import FakeExchange

    with FakeExchange(ws_api=True) as fake:
        fake.add_account(HMAC_KEY, secret=HMAC_SECRET)
        yield fake


def test_no_secret_key_or_signature_anywhere(
    exchange,
    make_manager: Callable[..., WSManager],
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    ed = new_ed25519()
    pem = private_pem(ed)
    exchange.add_account(ED_KEY, public_key_pem=public_pem(ed))
    manager = make_manager(debug=True)
    url = exchange.ws_api_url
    exchange.set_clock_offset(10)  # a -1021 and a correction: more requests, more logging
    good, ed_recorder, bad = Recorder(), Recorder(), Recorder()
    manager.user_data(good, api_key=HMAC_KEY, api_secret=HMAC_SECRET, ws_api_url=url)
    manager.user_data(ed_recorder, api_key=ED_KEY, private_key=pem, ws_api_url=url)
    manager.user_data(
        bad,
        api_key=HMAC_KEY + "x",
        api_secret="wrong" + HMAC_SECRET,
        on_error=bad.on_error,
        ws_api_url=url,
    )
    assert wait_for(lambda: exchange.user_subscription_count(HMAC_KEY) == 1)
    assert wait_for(lambda: exchange.user_subscription_count(ED_KEY) == 1)
    assert bad.wait(lambda r: bool(r.errors))
    exchange.drop()
    assert wait_for(lambda: exchange.user_subscription_count(HMAC_KEY) == 1)
    assert wait_for(lambda: exchange.user_subscription_count(ED_KEY) == 1)
    exchange.push_user_event(HMAC_KEY, event(1))
    assert good.wait_messages(1)

    signatures = [
        r["params"]["signature"] for r in methods(exchange, "userDataStream.subscribe.signature")
    ]
    assert len(signatures) >= 5
    pem_text = pem.decode()
    pem_body = [line for line in pem_text.splitlines() if line and "-----" not in line]
    secrets = [HMAC_SECRET, "wrong" + HMAC_SECRET, HMAC_KEY, ED_KEY, *pem_body, *signatures]

    credentials = Credentials(HMAC_KEY, api_secret=HMAC_SECRET)
    with pytest.raises(TypeError):
        pickle.dumps(credentials)
    # Every record of the client's side: the fake exchange's server (python-websockets, logger
    # "websockets.*") logs the frames it receives, as a test server may.
    records = [r for r in caplog.records if not r.name.startswith("websockets")]
    assert any(r.name == "wsmanager" and r.levelno == logging.DEBUG for r in records)
    written = [
        *(record.getMessage() for record in records),
        *(str(record.args) for record in records),
        *(str(record.exc_info) + str(record.exc_text) for record in records),
        repr(manager),
        repr(credentials),
        str(credentials),
        repr(Credentials(ED_KEY, private_key=pem)),
        *(repr(error) + str(error) for error in bad.errors),
        repr(manager.get_metrics()),
        manager.get_prometheus_metrics(),
        repr(manager.get_stream_info()),
        repr(manager.health()),
    ]
    assert any("Hmac…" in text for text in written)  # the key, masked, is what is shown
    leaks = [(secret[:12], text[:200]) for secret in secrets for text in written if secret in text]
    assert leaks == []


def test_futures_listen_keys_and_the_api_key_are_never_logged(
    exchange,
    make_manager: Callable[..., WSManager],
    caplog: pytest.LogCaptureFixture,  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.DEBUG)
    manager = make_manager(debug=True, endpoint="usdm-market", rest_url=exchange.futures_rest_url)
    recorder = Recorder()
    manager.user_data(
        recorder, api_key=HMAC_KEY, ws_api_url=exchange.private_url, keepalive_interval=0.2
    )
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    keys = [exchange.listen_key(HMAC_KEY)]
    exchange.expire_listen_key(HMAC_KEY)
    assert wait_for(lambda: exchange.listen_key(HMAC_KEY) not in (None, keys[0]))
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    keys.append(exchange.listen_key(HMAC_KEY))
    exchange.drop()
    assert wait_for(lambda: exchange.futures_connections(HMAC_KEY) == 1)
    records = [r for r in caplog.records if not r.name.startswith("websockets")]
    written = [
        *(record.getMessage() for record in records),
        repr(manager.get_metrics()),
        manager.get_prometheus_metrics(),
        repr(manager.health()),
        *(thread.name for thread in threading.enumerate()),
    ]
    secrets = [HMAC_KEY, *(key for key in keys if key)]
    assert [(s[:8], t[:200]) for s in secrets for t in written if s in t] == []
