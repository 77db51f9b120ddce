"""Proxies: HTTP CONNECT through Debian's tinyproxy, SOCKS5 through microsocks, both real
processes on loopback (skipped when absent, failing under CI=true), and the proxy option itself."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from conftest import FAST, SCALE, Recorder, flows, wait_for

from wsmanager import RetriesExhaustedError, WSManager
from wsmanager.proxy import (
    ProxyAuthError,
    ProxyError,
    ProxyURL,
    parse_proxy,
    proxy_for,
    requests_proxies,
)
from wsmanager.testing import FakeExchange

TRADE = "btcusdt@trade"
USER = "ws-user"
PASSWORD = "pr0xy-s3cret"
SECRETS = (USER, PASSWORD, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())


# -- the proxy processes ------------------------------------------------------------------------


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package {name}; .ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true a missing service is a failure")
        pytest.skip(message)
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Service:
    """A proxy process on 127.0.0.1:port, its output in a log file; stopped by ``stop()``."""

    def __init__(self, name: str, command: Callable[[int], list[str]], log_path: Path) -> None:
        self.name = name
        self._command = command
        self.log_path = log_path
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, port: int | None = None) -> Service:
        """Start on ``port`` (default: a free one; another one if that is taken meanwhile)."""
        for _ in range(1 if port else 5):
            self.port = port or _free_port()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self._command(self.port), stdout=log, stderr=subprocess.STDOUT
                )
            if self._wait_listening():
                return self
            self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.log()[-2000:]}")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + 5 * SCALE
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def url(self, scheme: str = "http", user: str | None = USER, password: str = PASSWORD) -> str:
        auth = f"{user}:{password}@" if user is not None else ""
        return f"{scheme}://{auth}127.0.0.1:{self.port}"


@pytest.fixture
def start_tinyproxy(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    binary = _binary("tinyproxy")
    services: list[Service] = []

    def start(
        connect_ports: tuple[int, ...], *, auth: bool = True, port: int | None = None
    ) -> Service:
        number = len(services)
        config = tmp_path / f"tinyproxy-{number}.conf"

        def command(listen: int) -> list[str]:
            lines = [
                f"Port {listen}",
                "Listen 127.0.0.1",
                "Timeout 60",
                "Allow 127.0.0.1",
                "MaxClients 50",
                "LogLevel Connect",
                "DisableViaHeader Yes",
                *(f"ConnectPort {p}" for p in connect_ports),
            ]
            if auth:
                lines.append(f"BasicAuth {USER} {PASSWORD}")
            config.write_text("\n".join(lines) + "\n")
            return [binary, "-d", "-c", str(config)]

        service = Service("tinyproxy", command, tmp_path / f"tinyproxy-{number}.log")
        services.append(service)
        return service.start(port)

    yield start
    for service in services:
        service.stop()


@pytest.fixture
def start_microsocks(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    binary = _binary("microsocks")
    services: list[Service] = []

    def start(*, auth: bool = True) -> Service:
        def command(listen: int) -> list[str]:
            args = [binary, "-i", "127.0.0.1", "-p", str(listen)]
            return [*args, "-u", USER, "-P", PASSWORD] if auth else args

        service = Service("microsocks", command, tmp_path / f"microsocks-{len(services)}.log")
        services.append(service)
        return service.start()

    yield start
    for service in services:
        service.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_exchange(ca: trustme.CA) -> Iterator[FakeExchange]:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    with FakeExchange(ssl_context=server_context) as exchange:
        yield exchange


def _client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _streams_through(manager: WSManager, exchange: FakeExchange) -> Recorder:
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert exchange.wait_for_open(TRADE, 1, timeout=10), recorder.errors
    assert flows(exchange, recorder)
    return recorder


def _assert_tunnelled(proxy: Service, exchange: FakeExchange) -> None:
    """The connection went through ``proxy``: it ends when the proxy process does."""
    assert exchange.open_connections() >= 1
    proxy.stop()
    assert exchange.wait_until(lambda: exchange.open_connections() == 0)


def _failure(manager: WSManager, timeout: float = 10) -> RetriesExhaustedError:
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert recorder.wait(lambda r: bool(r.errors), timeout)
    error = recorder.errors[0]
    assert isinstance(error, RetriesExhaustedError)
    return error


def _assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {text[:200]!r}"


# -- through tinyproxy (HTTP CONNECT) ------------------------------------------------------------


def test_a_stream_flows_through_an_http_connect_proxy(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_tinyproxy: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = start_tinyproxy((exchange.port,))
    manager = make_manager(proxy=proxy.url())
    _streams_through(manager, exchange)
    assert f"CONNECT 127.0.0.1:{exchange.port} HTTP/1.1" in proxy.log()
    assert f"through http://***@127.0.0.1:{proxy.port}" in caplog.text
    _assert_tunnelled(proxy, exchange)
    _assert_no_secrets(
        caplog.text,
        repr(manager.config),
        repr(manager.get_stream_info()),
        manager.get_prometheus_metrics(),
        repr(manager),
    )


def test_wss_through_an_http_connect_proxy(
    tls_exchange: FakeExchange, ca: trustme.CA, start_tinyproxy: Callable[..., Service]
) -> None:
    proxy = start_tinyproxy((tls_exchange.port,))
    with WSManager(
        url=tls_exchange.url, ssl_context=_client_context(ca), proxy=proxy.url(), **FAST
    ) as manager:
        _streams_through(manager, tls_exchange)
        assert f"CONNECT 127.0.0.1:{tls_exchange.port}" in proxy.log()
        _assert_tunnelled(proxy, tls_exchange)


def test_wrong_credentials_give_a_clear_error_and_no_secret_in_any_log(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_tinyproxy: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = start_tinyproxy((exchange.port,))
    manager = make_manager(proxy=proxy.url(password="wrong-" + PASSWORD), max_retry_attempts=2)
    error = _failure(manager)
    last = error.last_error
    assert isinstance(last, ProxyAuthError) and last.status_code in (401, 407)  # tinyproxy: 401
    assert f"refused the credentials (HTTP {last.status_code})" in str(last)
    assert last.proxy == f"http://***@127.0.0.1:{proxy.port}"
    assert "retry 1" in caplog.text  # retried like any failed attempt
    assert exchange.stats(TRADE).accepted == 0
    _assert_no_secrets(
        caplog.text, str(error), repr(error), repr(last), "wrong-", *manager.health().reasons
    )


def test_missing_credentials_are_named(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_tinyproxy: Callable[..., Service],
) -> None:
    proxy = start_tinyproxy((exchange.port,))
    manager = make_manager(proxy=proxy.url(user=None), max_retry_attempts=1)
    last = _failure(manager).last_error
    assert isinstance(last, ProxyAuthError)
    assert "requires credentials (HTTP 407)" in str(last)


def test_a_connect_the_proxy_forbids_names_the_status(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_tinyproxy: Callable[..., Service],
) -> None:
    proxy = start_tinyproxy((exchange.port + 1,), auth=False)  # not the exchange's port
    manager = make_manager(proxy=proxy.url(user=None), max_retry_attempts=1)
    last = _failure(manager).last_error
    assert isinstance(last, ProxyError) and not isinstance(last, ProxyAuthError)
    assert last.status_code == 403
    assert f"answered CONNECT 127.0.0.1:{exchange.port} with HTTP 403" in str(last)


def test_a_proxy_that_is_down_is_retried_with_backoff_until_it_is_up(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_tinyproxy: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="wsmanager")
    port = _free_port()
    manager = make_manager(
        proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", max_retry_attempts=None
    )
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error)
    assert wait_for(lambda: manager.get_metrics().retry_count >= 3)
    failures = [r.getMessage() for r in caplog.records if "attempt failed" in r.getMessage()]
    assert f"proxy http://***@127.0.0.1:{port}: could not connect" in failures[0]
    assert "retry 1 in" in failures[0] and "retry 3 in" in failures[2]
    start_tinyproxy((exchange.port,), port=port)
    assert exchange.wait_for_open(TRADE, 1, timeout=10)
    assert flows(exchange, recorder)
    assert not recorder.errors
    _assert_no_secrets(caplog.text)


# -- proxies that misbehave -----------------------------------------------------------------------


@pytest.fixture
def bad_proxy() -> Iterator[Callable[[bytes, float], tuple[int, threading.Event]]]:
    """A TCP listener that accepts, then sends ``chunk`` every ``interval`` seconds (an empty
    chunk: it never says a word)."""
    started: list[tuple[threading.Thread, socket.socket]] = []
    done = threading.Event()

    def start(chunk: bytes, interval: float) -> tuple[int, threading.Event]:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.settimeout(0.05)
        accepted = threading.Event()

        def serve() -> None:
            held: list[socket.socket] = []
            try:
                while not done.is_set():
                    try:
                        conn, _ = listener.accept()
                        held.append(conn)
                        accepted.set()
                    except TimeoutError:
                        pass
                    for conn in held:
                        if chunk:
                            with contextlib.suppress(OSError):
                                conn.send(chunk)
                    done.wait(interval)
            finally:
                for conn in held:
                    conn.close()

        thread = threading.Thread(target=serve, name="bad-proxy")
        thread.start()
        started.append((thread, listener))
        return listener.getsockname()[1], accepted

    yield start
    done.set()
    for thread, listener in started:
        thread.join()
        listener.close()


@pytest.mark.parametrize(
    ("scheme", "chunk"),
    [("http", b""), ("socks5h", b""), ("http", b"H")],
    ids=["http-silent", "socks5h-silent", "http-trickling"],
)
def test_a_proxy_that_never_finishes_its_answer_is_bounded_by_handshake_timeout(
    make_manager: Callable[..., WSManager],
    bad_proxy: Callable[[bytes, float], tuple[int, threading.Event]],
    scheme: str,
    chunk: bytes,
) -> None:
    port, accepted = bad_proxy(chunk, 0.02)
    timeout = 0.5 * SCALE
    manager = make_manager(
        proxy=f"{scheme}://127.0.0.1:{port}", handshake_timeout=timeout, max_retry_attempts=1
    )
    started = time.monotonic()
    error = _failure(manager)
    elapsed = time.monotonic() - started
    assert accepted.is_set()
    last = error.last_error
    assert isinstance(last, ProxyError)
    assert "before the deadline (handshake_timeout)" in str(last)
    assert timeout * 0.9 <= elapsed < timeout + 1.0 * SCALE


def test_an_endless_proxy_answer_is_cut_at_its_size_limit(
    make_manager: Callable[..., WSManager],
    bad_proxy: Callable[[bytes, float], tuple[int, threading.Event]],
) -> None:
    port, _ = bad_proxy(b"HTTP/1.1 200 OK\r\nX: " + b"y" * 4096, 0.001)
    manager = make_manager(proxy=f"http://127.0.0.1:{port}", max_retry_attempts=1)
    last = _failure(manager).last_error
    assert isinstance(last, ProxyError)
    assert "the proxy's answer is over 16384 bytes" in str(last)


def test_destroy_during_a_proxy_handshake_returns_promptly(
    bad_proxy: Callable[[bytes, float], tuple[int, threading.Event]],
) -> None:
    port, accepted = bad_proxy(b"", 0.02)
    manager = WSManager(
        url="ws://127.0.0.1:9/ws/",
        proxy=f"http://{USER}:{PASSWORD}@127.0.0.1:{port}",
        **{**FAST, "handshake_timeout": 30.0},
    )
    recorder = Recorder()
    manager.subscribe(TRADE, recorder, recorder.on_error, recorder.on_complete)
    assert accepted.wait(5 * SCALE)  # the reader is in the handshake, waiting for an answer
    started = time.monotonic()
    manager.destroy()
    assert time.monotonic() - started < 1.0 * SCALE
    assert recorder.completed == 1 and not recorder.errors


# -- through microsocks (SOCKS5) -----------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_a_stream_flows_through_a_socks5_proxy(
    exchange: FakeExchange,
    make_manager: Callable[..., WSManager],
    start_microsocks: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
    scheme: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = start_microsocks()
    url = exchange.url.replace("127.0.0.1", "localhost")  # a name: resolved here or remotely
    manager = make_manager(url=url, proxy=proxy.url(scheme))
    _streams_through(manager, exchange)
    assert f"through {scheme}://***@127.0.0.1:{proxy.port}" in caplog.text
    _assert_tunnelled(proxy, exchange)
    _assert_no_secrets(caplog.text)


def test_wss_through_a_socks5_proxy(
    tls_exchange: FakeExchange, ca: trustme.CA, start_microsocks: Callable[..., Service]
) -> None:
    proxy = start_microsocks()
    url = tls_exchange.url.replace("127.0.0.1", "localhost")  # the certificate's name, via SNI
    with WSManager(
        url=url, ssl_context=_client_context(ca), proxy=proxy.url("socks5h"), **FAST
    ) as manager:
        _streams_through(manager, tls_exchange)
        _assert_tunnelled(proxy, tls_exchange)


@pytest.fixture
def socks_refusing() -> Iterator[tuple[int, list[bytes]]]:
    """A SOCKS5 server that takes no authentication, records each CONNECT request and answers
    it with reply 2 (not allowed by its ruleset)."""
    listener = socket.create_server(("127.0.0.1", 0))
    requests_seen: list[bytes] = []
    done = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                greeting = conn.recv(2)
                conn.recv(greeting[1])
                conn.sendall(b"\x05\x00")
                requests_seen.append(conn.recv(512))
                conn.sendall(b"\x05\x02\x00\x01" + bytes(6))

    thread = threading.Thread(target=serve, name="socks-refusing")
    thread.start()
    yield listener.getsockname()[1], requests_seen
    done.set()
    thread.join()
    listener.close()


@pytest.mark.parametrize(
    ("scheme", "address"),
    [("socks5", b"\x01\x7f\x00\x00\x01"), ("socks5h", b"\x03\x09localhost")],
)
def test_socks5_resolves_here_and_socks5h_lets_the_proxy_resolve(
    make_manager: Callable[..., WSManager],
    socks_refusing: tuple[int, list[bytes]],
    scheme: str,
    address: bytes,
) -> None:
    port, seen = socks_refusing
    manager = make_manager(
        url="ws://localhost:9443/ws/", proxy=f"{scheme}://127.0.0.1:{port}", max_retry_attempts=1
    )
    last = _failure(manager).last_error
    assert isinstance(last, ProxyError)
    assert "could not connect to localhost:9443: connection not allowed by ruleset" in str(last)
    assert seen == [b"\x05\x01\x00" + address + (9443).to_bytes(2, "big")]


def test_socks5_wrong_or_missing_credentials(
    make_manager: Callable[..., WSManager],
    start_microsocks: Callable[..., Service],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    proxy = start_microsocks()
    wrong = make_manager(proxy=proxy.url("socks5", password="wrong"), max_retry_attempts=1)
    last = _failure(wrong).last_error
    assert isinstance(last, ProxyAuthError)
    assert "refused the username and password" in str(last)
    missing = make_manager(proxy=proxy.url("socks5", user=None), max_retry_attempts=1)
    last = _failure(missing).last_error
    assert isinstance(last, ProxyAuthError)
    assert "accepts none of our authentication methods" in str(last)
    _assert_no_secrets(caplog.text)


def test_socks5_reports_why_the_target_is_unreachable(
    make_manager: Callable[..., WSManager], start_microsocks: Callable[..., Service]
) -> None:
    proxy = start_microsocks(auth=False)
    closed = _free_port()
    manager = make_manager(
        url=f"ws://127.0.0.1:{closed}/ws/",
        proxy=proxy.url(user=None, scheme="socks5"),
        max_retry_attempts=1,
    )
    last = _failure(manager).last_error
    assert isinstance(last, ProxyError)
    assert f"could not connect to 127.0.0.1:{closed}: connection refused (reply 5)" in str(last)


# -- REST through the same proxy ------------------------------------------------------------------


def test_rest_calls_through_the_proxy_option(
    exchange: FakeExchange,
    start_tinyproxy: Callable[..., Service],
    start_microsocks: Callable[..., Service],
) -> None:
    ping = exchange.rest_url + "/api/v3/ping"
    http_proxy = start_tinyproxy((exchange.port,))
    response = requests.get(ping, proxies=requests_proxies(http_proxy.url()), timeout=5)
    assert response.status_code == 200
    assert f"GET {ping}" in http_proxy.log()
    refused = requests.get(
        ping, proxies=requests_proxies(http_proxy.url(password="nope")), timeout=5
    )
    assert refused.status_code in (401, 407)  # tinyproxy answers a wrong password with 401
    socks = start_microsocks()
    response = requests.get(ping, proxies=requests_proxies(socks.url("socks5h")), timeout=5)
    assert response.status_code == 200


def test_rest_without_the_proxy_option_ignores_proxy_variables(
    exchange: FakeExchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    ping = exchange.rest_url + "/api/v3/ping"
    with pytest.raises(requests.exceptions.ProxyError):  # the control: requests' default
        requests.get(ping, timeout=5)
    assert requests.get(ping, proxies=requests_proxies(None), timeout=5).status_code == 200


# -- the option (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://proxy.corp:3128", ProxyURL("http", "proxy.corp", 3128)),
        ("http://proxy.corp", ProxyURL("http", "proxy.corp", 80)),
        ("HTTP://Proxy.Corp:8080/", ProxyURL("http", "proxy.corp", 8080)),
        ("socks5://10.0.0.1", ProxyURL("socks5", "10.0.0.1", 1080)),
        ("socks5h://[::1]:1081", ProxyURL("socks5h", "::1", 1081)),
        ("http://a%40b:p%3Ass@h:1", ProxyURL("http", "h", 1, "a@b", "p:ss")),
        ("http://user@h:1", ProxyURL("http", "h", 1, "user", None)),
    ],
)
def test_proxy_urls_are_parsed(value: str, expected: ProxyURL) -> None:
    parsed = parse_proxy(value)
    assert parsed == expected
    assert (parsed.username, parsed.password) == (expected.username, expected.password)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://u:pr0xy-s3cret@h:1", "unsupported proxy scheme 'https://'"),
        ("socks4://h:1", "unsupported proxy scheme 'socks4://'"),
        ("proxy.corp:3128", "must be a URL such as http://host:port"),
        ("http://u:pr0xy-s3cret@:1", "has no host"),
        ("http://h:1/path", "must not have a path, query or fragment"),
        ("http://h:1?x=1", "must not have a path, query or fragment"),
        ("http://u:pr0xy-s3cret@h:99999", "has an invalid port"),
        ("http://:pr0xy-s3cret@h:1", "has a password but no username"),
        ("socks5://ws-user@h:1", "a SOCKS5 password must be 1 to 255 bytes"),
        ("socks5://" + "u" * 256 + ":p@h:1", "a SOCKS5 username must be 1 to 255 bytes"),
        (42, "proxy must be a str"),
    ],
)
def test_bad_proxy_urls_are_refused_at_construction(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match="proxy") as info:
        WSManager(url="ws://127.0.0.1:9/ws/", proxy=value)
    assert message in str(info.value)
    _assert_no_secrets(str(info.value))


def test_the_proxy_url_keeps_its_credentials_out_of_repr() -> None:
    proxy = parse_proxy(f"http://{USER}:{PASSWORD}@h:1")
    _assert_no_secrets(repr(proxy), proxy.display)
    assert proxy.display == "http://***@h:1"
    assert parse_proxy(proxy.url) == proxy
    assert (parse_proxy(proxy.url).username, parse_proxy(proxy.url).password) == (USER, PASSWORD)


def test_env_uses_the_proxy_variables_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        for variant in (name, name.upper()):
            monkeypatch.delenv(variant, raising=False)
    monkeypatch.setenv("https_proxy", "secure.corp:3128")  # no scheme: http://
    monkeypatch.setenv("all_proxy", "socks5h://socks.corp:1080")
    monkeypatch.setenv("no_proxy", "internal.corp,localhost")
    assert proxy_for(None, "wss://stream.binance.com:9443/ws") is None  # the default: none
    assert proxy_for("env", "wss://stream.binance.com:9443/ws") == ProxyURL(
        "http", "secure.corp", 3128
    )
    assert proxy_for("env", "ws://stream.binance.com/ws") == ProxyURL("socks5h", "socks.corp", 1080)
    assert proxy_for("env", "wss://feed.internal.corp/ws") is None
    monkeypatch.setenv("https_proxy", "https://u:pr0xy-s3cret@secure.corp")
    with pytest.raises(
        ValueError, match="proxy='env': the https_proxy environment variable"
    ) as info:
        WSManager(url="ws://127.0.0.1:9/ws/", proxy="env")
    _assert_no_secrets(str(info.value))


def test_requests_proxies_maps_the_option() -> None:
    assert requests_proxies(None) == {"http": None, "https": None, "all": None}
    assert requests_proxies("env") == {}
    url = f"socks5h://{USER}:{PASSWORD}@h:1"
    assert requests_proxies(url) == {"http": url, "https": url}
    with pytest.raises(ValueError, match="proxy"):
        requests_proxies("ftp://h")
