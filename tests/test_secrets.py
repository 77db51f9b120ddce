"""Issue 17, finding 12: credentials in URLs (``user:password@`` in ``url``, ``rest_url``, proxy
and Redis URLs) never appear in a ``repr``, a log line (DEBUG included), an exception, the metrics
or the CLI's output. Real servers: the fake exchange (WebSocket and REST), redis-server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SCALE, Recorder, wait_for

from wsmanager import WSManager, WSManagerConfig
from wsmanager.cli.main import main
from wsmanager.config import redact_url
from wsmanager.monitoring import serve_metrics
from wsmanager.proxy import parse_proxy
from wsmanager.relay import Relay, RelayClient
from wsmanager.relay.redis_server import RedisServer
from wsmanager.testing import FakeExchange

pytest_plugins = ("relay_fixtures",)  # fixtures: redis_server, make_relay, make_client

SECRET = "s3cret"
TRADE = "btcusdt@trade"


def _with_secret(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://me:{SECRET}@{rest}"


def _errors(*calls: Callable[[], object]) -> list[str]:
    """The text of what each call raised."""
    texts = []
    for call in calls:
        try:
            call()
        except Exception as exc:  # any error: its text is what we check
            texts.append(f"{exc!s} {exc!r}")
        else:
            pytest.fail(f"{call} raised nothing")
    return texts


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://me:s3cret@h:1/ws/x?key=abc", "wss://***@h:1/ws/x?key=***"),
        (
            "wss://h/stream?streams=a@trade&timeUnit=MICROSECOND",
            "wss://h/stream?streams=***&timeUnit=MICROSECOND",
        ),
        ("wss://h/private/ws?listenKey=s3cret&s3cret", "wss://h/private/ws?listenKey=***&***"),
        ("redis://:s3cret@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        ("redis://me:s3/cret@h:6379/0", "redis://***@h:6379/0"),  # an unencoded '/'
        ("me:s3cret@h:1", "***@h:1"),
        ("http://[::1", "http://[::1"),  # urlsplit raises on this one
        ("wss://h:9443/ws/btcusdt@trade", "wss://h:9443/ws/btcusdt@trade"),
        (None, "None"),
        (42, "<int>"),
    ],
)
def test_redact_url_never_raises_and_never_shows_a_password(url: Any, shown: str) -> None:
    assert redact_url(url) == shown


def test_no_credential_in_any_repr_log_error_metric_or_cli_output(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    redis_server: RedisServer,
    make_relay: Callable[..., Relay],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)
    # The manager: WebSocket and REST URLs with credentials, a REST error logged as a warning.
    exchange.set_rate(20)
    exchange.rest_errors(500, count=1)
    manager = make_manager(
        url=_with_secret(exchange.url), rest_url=_with_secret(exchange.rest_url), debug=True
    )
    recorder = Recorder()
    manager.subscribe(TRADE, recorder)
    book = manager.order_book("BTCUSDT", limit=100)
    assert book.wait_synced(10 * SCALE)
    assert "depth snapshot failed" in caplog.text  # the REST warning was logged
    texts += [repr(manager.config), repr(manager), repr(book), repr(manager.get_stream_info())]
    texts += [manager.get_prometheus_metrics(), repr(manager.get_metrics())]
    # Errors that quote a URL.
    texts += _errors(
        lambda: WSManagerConfig(url="ws://h/ws/", rest_url=f"ftp://me:{SECRET}@h"),
        lambda: WSManagerConfig(url=f"http://me:{SECRET}@h/ws/"),
        lambda: parse_proxy(f"ftp://me:{SECRET}@h:1"),
        lambda: RelayClient(f"http://me:{SECRET}@h:1"),
    )
    texts.append(repr(WSManagerConfig(url="ws://h/ws/", proxy=f"http://me:{SECRET}@p:1")))
    # Redis: a server that refuses the password, and one that is not there.
    refused = RelayClient(
        _with_secret(redis_server.url), base_retry_delay=0.05, max_retry_delay=0.1
    )
    missing = RelayClient(
        f"redis://me:{SECRET}@127.0.0.1:1/0", base_retry_delay=0.05, max_retry_delay=0.1
    )
    for client in (refused, missing):
        client.subscribe(TRADE, Recorder())
    assert wait_for(lambda: not refused.health().healthy and not missing.health().healthy)
    for client in (refused, missing):
        texts += [repr(client), repr(client.health()), client.get_prometheus_metrics()]
        client.close()
    relay = make_relay(TRADE, redis_url=f"redis://me:{SECRET}@127.0.0.1:1/0")
    assert wait_for(lambda: not relay.health().healthy, 10)
    texts += [repr(relay), repr(relay.health()), relay.get_prometheus_metrics()]
    # A proxy with credentials that is not there: the attempts fail and are logged.
    proxied = make_manager(proxy=f"http://me:{SECRET}@127.0.0.1:1", max_retry_attempts=2)
    failed = Recorder()
    proxied.subscribe(TRADE, failed, on_error=failed.on_error)
    assert failed.wait(lambda r: bool(r.errors))
    texts += [repr(proxied.config), repr(proxied), *(f"{e!s} {e!r}" for e in failed.errors)]
    # The CLI: wsmanager health, reachable and not.
    with serve_metrics(manager, port=0) as server:
        assert main(["health", _with_secret(server.url)]) == 0
    assert main(["health", f"http://me:{SECRET}@127.0.0.1:1/x"]) == 2
    out, err = capsys.readouterr()
    assert "healthy (http://***@127.0.0.1" in out and "unreachable: http://***@" in err
    texts += [out, err, caplog.text]
    leaks = [text for text in texts if SECRET in text]
    assert not leaks, leaks[0][:2000]
    logging.getLogger("wsmanager").setLevel(logging.NOTSET)
