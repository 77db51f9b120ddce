"""Endpoint presets: their numbers, how WSManager(endpoint=...) applies them, routed paths."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import FAST, Recorder, flows

from wsmanager import WSManager, WSManagerConfig
from wsmanager.core.targets import target_for
from wsmanager.endpoints import ENDPOINTS, Endpoint, apply_endpoint, get_endpoint
from wsmanager.testing import FakeExchange

DOC = Path(__file__).resolve().parent.parent / "docs" / "endpoints.md"
RULES = (
    "max_client_messages_per_second",
    "ping_interval",
    "streams_per_connection",
    "max_connection_age",
)


def test_the_presets_named_in_the_issue_exist() -> None:
    assert {"spot", "spot-data", "spot-testnet", "usdm-public", "usdm-market", "coinm"} <= set(
        ENDPOINTS
    )
    assert ENDPOINTS["spot"].url == "wss://stream.binance.com:9443/ws"
    assert ENDPOINTS["spot-data"].url == "wss://data-stream.binance.vision/ws"
    assert ENDPOINTS["usdm-market"].url == "wss://fstream.binance.com/market/ws"
    assert ENDPOINTS["usdm-public"].url == "wss://fstream.binance.com/public/ws"
    assert ENDPOINTS["usdm-market"].max_client_messages_per_second < 10
    assert ENDPOINTS["usdm-market"].exchange_ping_interval == 180.0
    assert all(isinstance(e, Endpoint) for e in ENDPOINTS.values())
    with pytest.raises(TypeError):
        ENDPOINTS["new"] = ENDPOINTS["spot"]  # type: ignore[index]


@pytest.mark.parametrize("name", list(ENDPOINTS))
def test_each_preset_is_valid_and_keeps_under_the_exchange_limits(name: str) -> None:
    endpoint = ENDPOINTS[name]
    assert endpoint.name == name
    key = {"api_key": "test-key"} if endpoint.encoding == "sbe" else {}  # SBE needs a key
    config = WSManagerConfig(**apply_endpoint(endpoint, None, key))  # validates every value
    assert urlsplit(endpoint.url).scheme == "wss"
    assert endpoint.url.endswith("/ws") or (endpoint.routed and not urlsplit(endpoint.url).path)
    assert urlsplit(endpoint.rest_url).scheme == "https"
    assert endpoint.source.startswith("https://developers.binance.")
    limit = endpoint.exchange_messages_per_second
    assert limit is not None and config.max_client_messages_per_second < limit
    streams = endpoint.exchange_streams_per_connection
    assert streams is not None and config.streams_per_connection <= streams
    lifetime = endpoint.exchange_connection_lifetime
    assert lifetime is not None and config.max_connection_age is not None
    assert config.max_connection_age < lifetime
    assert target_for(config).combined or endpoint.routed  # a /ws base: combined streams
    assert endpoint.depth_path.startswith(("/api/v3/", "/fapi/v1/", "/dapi/v1/"))
    assert endpoint.agg_trades_path.startswith(endpoint.depth_path.rsplit("/", 1)[0])
    assert (endpoint.market == "spot") == endpoint.depth_path.startswith("/api/v3/")


def test_the_docs_cite_every_preset_and_its_source() -> None:
    text = DOC.read_text()
    for endpoint in ENDPOINTS.values():
        row = re.search(rf"^\| `{re.escape(endpoint.name)}` \|(.+)$", text, re.MULTILINE)
        assert row, endpoint.name
        assert f"`{endpoint.url}`" in row.group(1)
        assert f"`{endpoint.rest_url}`" in row.group(1)
        assert endpoint.source in text


def test_the_preset_gives_the_url_and_rules() -> None:
    with WSManager(endpoint="usdm-market") as manager:
        assert manager.endpoint is ENDPOINTS["usdm-market"]
        assert manager.config.url == "wss://fstream.binance.com/market/ws"
        for rule in RULES:
            assert getattr(manager.config, rule) == getattr(ENDPOINTS["usdm-market"], rule)
        defaults = WSManagerConfig(url="wss://x/ws")
        assert manager.config.base_retry_delay == defaults.base_retry_delay  # untouched


def test_options_the_caller_passes_win() -> None:
    with WSManager(
        endpoint="usdm-market", max_client_messages_per_second=3.0, ping_interval=30.0
    ) as manager:
        assert manager.config.max_client_messages_per_second == 3.0
        assert manager.config.ping_interval == 30.0
        assert manager.config.streams_per_connection == 200  # the preset's


def test_url_and_endpoint_the_url_is_the_address_the_rules_still_apply(
    exchange: FakeExchange,
) -> None:
    rules = {k: v for k, v in FAST.items() if k not in RULES and k != "streams_per_connection"}
    with WSManager(url=exchange.url, endpoint="coinm", **rules) as manager:
        assert manager.config.url == exchange.url
        assert manager.config.max_client_messages_per_second == 8.0
        assert manager.config.streams_per_connection == 200
        recorder = Recorder()
        manager.subscribe("btcusdt@aggTrade", recorder)
        manager.subscribe("btcusdt@trade", recorder)
        assert exchange.wait_until(lambda: exchange.open_connections() == 1)  # combined
        assert flows(exchange, recorder)


def test_a_custom_endpoint_object_works_like_a_preset() -> None:
    mine = dataclasses.replace(
        ENDPOINTS["spot"], name="mine", url="wss://example.test/ws", streams_per_connection=50
    )
    with WSManager(endpoint=mine) as manager:
        assert manager.endpoint is mine and manager.config.streams_per_connection == 50
    assert get_endpoint(mine) is mine


def test_an_unknown_preset_is_refused_with_the_names() -> None:
    with pytest.raises(ValueError, match="unknown endpoint 'binance'") as info:
        WSManager(endpoint="binance")
    for name in ENDPOINTS:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="endpoint must be a preset name or an Endpoint"):
        WSManager(endpoint=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs url= or endpoint="):
        WSManager()


@pytest.mark.parametrize(
    ("name", "combined", "raw"),
    [
        (
            "usdm-market",
            "wss://fstream.binance.com/market/stream?streams=btcusdt@aggTrade/btcusdt@markPrice",
            "wss://fstream.binance.com/market/ws/btcusdt@aggTrade",
        ),
        (
            "usdm-public",
            "wss://fstream.binance.com/public/stream?streams=btcusdt@aggTrade/btcusdt@markPrice",
            "wss://fstream.binance.com/public/ws/btcusdt@aggTrade",
        ),
        (
            "spot",
            "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/btcusdt@markPrice",
            "wss://stream.binance.com:9443/ws/btcusdt@aggTrade",
        ),
    ],
)
def test_routed_paths_build_the_combined_and_raw_urls(name: str, combined: str, raw: str) -> None:
    # The fake exchange serves /ws and /stream only, so the routed URLs are checked as URLs.
    endpoint = ENDPOINTS[name]
    config = WSManagerConfig(**apply_endpoint(endpoint, None, {}))
    url, named = target_for(config).url(["btcusdt@aggTrade", "btcusdt@markPrice"])
    assert url == combined and named == ["btcusdt@aggTrade", "btcusdt@markPrice"]
    assert target_for(config).url([])[0] == combined.split("?")[0]
    one = WSManagerConfig(**apply_endpoint(endpoint, None, {"streams_per_connection": 1}))
    assert target_for(one).url(["btcusdt@aggTrade"])[0] == raw


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wsmanager", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_stream_command_takes_an_endpoint(exchange: FakeExchange) -> None:
    result = _cli("stream", "btcusdt@trade", "--endpoint", "nowhere")
    assert result.returncode == 2
    assert "invalid choice: 'nowhere'" in result.stderr and "usdm-market" in result.stderr
    exchange.set_rate(50)
    result = _cli(
        "stream",
        "btcusdt@trade",
        "--endpoint",
        "usdm-market",
        "--url",
        exchange.url,
        "--count",
        "2",
    )
    exchange.set_rate(0)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_each_v3_row_of_the_docs_names_tests_that_exist() -> None:
    text = DOC.read_text()
    table = text[text.index("## What backs each row") :]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("row", "---"):
            rows[cells[0]] = re.findall(r"`(tests/[^`:]+)::([^`]+)`", cells[2])
    assert set(rows) == {"futures", "routes", "µs time", "Unicode symbols", "id resets"}
    root = DOC.parent.parent
    for row, tests in rows.items():
        assert tests, row
        for path, name in tests:
            assert f"def {name}(" in (root / path).read_text(), (row, path, name)


def test_usdm_routes_and_refusals() -> None:
    from wsmanager.endpoints import route_refusal, usdm_route

    public = ["btcusdt@depth", "btcusdt@depth@100ms", "btcusdt@depth5@500ms", "!bookTicker",
              "btcusdt@bookTicker", "btcusdt@rpiDepth@500ms"]  # fmt: skip
    market = ["btcusdt@aggTrade", "btcusdt@markPrice@1s", "!markPrice@arr", "btcusdt@kline_1m",
              "btcusdt_perp@continuousKline_1m", "!forceOrder@arr", "!contractInfo",
              "btcusdt@miniTicker", "!ticker@arr"]  # fmt: skip
    assert {usdm_route(s) for s in public} == {"public"}
    assert {usdm_route(s) for s in market} == {"market"}
    assert usdm_route("btcusdt@nothing") is None and usdm_route("!nothing") is None
    both = ENDPOINTS["usdm"].routes
    assert route_refusal("btcusdt@nothing", both) and not route_refusal("btcusdt@depth", both)
    assert route_refusal("btcusdt@depth", ("market",))
    assert not route_refusal("btcusdt@nothing", ("market",))  # unknown: let through
    assert route_refusal("btcusdt@depth", ()) is None
