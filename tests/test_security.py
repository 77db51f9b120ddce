"""Safe defaults: TLS verification, plain-ws warnings, redaction of URL secrets."""

from __future__ import annotations

import json
import logging
import ssl
import urllib.request
from collections.abc import Callable, Iterator

import pytest
import trustme
from conftest import FAST, Recorder

from wsmanager import ConnectionFailedError, RetriesExhaustedError, WSManager
from wsmanager.config import redact_url
from wsmanager.monitoring import serve_metrics
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _tls_exchange(ca: trustme.CA, *names: str) -> FakeExchange:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(server_context)
    return FakeExchange(ssl_context=server_context)


@pytest.fixture
def tls_exchange(ca: trustme.CA) -> Iterator[FakeExchange]:
    with _tls_exchange(ca, "127.0.0.1", "localhost") as exchange:
        yield exchange


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _failure(manager: WSManager) -> BaseException:
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: bool(r.errors), 10)
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError)
    assert isinstance(error.last_error, ConnectionFailedError)
    assert error.last_error.__cause__ is not None  # the original, kept
    return error.last_error.__cause__


def test_wss_with_a_trusted_ca(tls_exchange: FakeExchange, ca: trustme.CA) -> None:
    assert tls_exchange.url.startswith("wss://")
    with WSManager(url=tls_exchange.url, ssl_context=_client_context(ca), **FAST) as manager:
        recorder = Recorder()
        manager.subscribe(TRADE, recorder)
        assert tls_exchange.wait_for_open(TRADE, 1)
        tls_exchange.publish(TRADE, {"secure": True})
        assert recorder.wait_messages(1) and recorder.messages == [{"secure": True}]


def test_an_untrusted_certificate_is_refused_by_default(tls_exchange: FakeExchange) -> None:
    with WSManager(url=tls_exchange.url, max_retry_attempts=2, **FAST) as manager:
        error = _failure(manager)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert tls_exchange.stats(TRADE).accepted == 0


def test_a_certificate_for_another_host_is_refused(ca: trustme.CA) -> None:
    with (
        _tls_exchange(ca, "example.test") as exchange,
        WSManager(
            url=exchange.url, ssl_context=_client_context(ca), max_retry_attempts=1, **FAST
        ) as manager,
    ):
        error = _failure(manager)
    assert isinstance(error, ssl.SSLCertVerificationError)
    assert "hostname" in str(error).lower() or "ip address" in str(error).lower()


def test_verification_off_only_on_request_and_with_a_warning(
    tls_exchange: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="wsmanager"),
        WSManager(url=tls_exchange.url, verify_tls=False, **FAST) as manager,
    ):
        recorder = Recorder()
        manager.subscribe(TRADE, recorder)
        assert tls_exchange.wait_for_open(TRADE, 1)
    assert "verification is OFF" in caplog.text


def test_plain_ws_to_a_remote_host_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wsmanager"):
        WSManager(url="ws://127.0.0.1:9/ws/").destroy()
        assert "not encrypted" not in caplog.text
        WSManager(url="ws://exchange.example/ws/").destroy()  # no subscribe: no connection
        assert caplog.text.count("not encrypted") == 1


def test_url_credentials_are_redacted_everywhere(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert redact_url("wss://me:s3cret@h:1/ws/x?key=abc") == "wss://***@h:1/ws/x?key=***"
    url = exchange.url.replace("ws://", "ws://me:s3cret@")
    with caplog.at_level(logging.DEBUG, logger="wsmanager"):
        manager = make_manager(url=url, debug=True)
        manager.subscribe(TRADE, Recorder())
        assert exchange.wait_for_open(TRADE, 1)
        exchange.drop(TRADE)
        assert exchange.wait_for_attempts(TRADE, 2)
        info = manager.get_stream_info()[0]
        with serve_metrics(manager, port=0) as server, urllib.request.urlopen(server.url) as r:
            document = json.loads(r.read())
    assert "s3cret" not in info.url and "***@" in info.url
    assert "s3cret" not in json.dumps(document)
    assert "s3cret" not in repr(manager)
    assert "s3cret" not in caplog.text
    logging.getLogger("wsmanager").setLevel(logging.NOTSET)
