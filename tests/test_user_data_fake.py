"""The fake exchange's WebSocket API: signatures checked as the exchange does, documented codes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("cryptography")
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from websockets.sync.client import ClientConnection, connect

from wsmanager.testing import FakeExchange
from wsmanager.testing.wsapi import signature_payload

KEY = "hmacKey0001"
SECRET = "s3cret-hmac-value"


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(ws_api=True) as ex:
        ex.add_account(KEY, secret=SECRET)
        yield ex


def _public_pem(private: Any) -> bytes:
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _params(api_key: str, sign: Any, timestamp: int | None = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "apiKey": api_key,
        "timestamp": timestamp if timestamp is not None else int(time.time() * 1000),
        **extra,
    }
    params["signature"] = sign(signature_payload(params).encode())
    return params


def _hmac(secret: str) -> Any:
    return lambda data: hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()


def _request(ws: ClientConnection, method: str, params: dict[str, Any] | None = None) -> Any:
    ws.send(json.dumps({"id": 7, "method": method, **({"params": params} if params else {})}))
    return json.loads(ws.recv(5))


def test_the_signature_payload_is_the_documented_one() -> None:
    # The example of Binance's web-socket-api.md (SIGNED request example, HMAC).
    params = {
        "symbol": "BTCUSDT",
        "side": "SELL",
        "type": "LIMIT",
        "timeInForce": "GTC",
        "quantity": "0.01000000",
        "price": "52000.00",
        "recvWindow": 100,
        "timestamp": 1645423376532,
        "apiKey": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
        "signature": "ignored",
    }
    payload = signature_payload(params)
    assert payload == (
        "apiKey=vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A&price=52000.00"
        "&quantity=0.01000000&recvWindow=100&side=SELL&symbol=BTCUSDT&timeInForce=GTC"
        "&timestamp=1645423376532&type=LIMIT"
    )
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert _hmac(secret)(payload.encode()) == (
        "aa1b5712c094bc4e57c05a1a5c1fd8d88dcd628338ea863fec7b88e59fe2db24"
    )


def test_hmac_subscription_gets_events_and_ends_with_event_stream_terminated(
    exchange: FakeExchange,
) -> None:
    with connect(exchange.ws_api_url) as ws:
        answer = _request(ws, "userDataStream.subscribe.signature", _params(KEY, _hmac(SECRET)))
        assert answer["status"] == 200 and answer["result"] == {"subscriptionId": 0}
        assert answer["rateLimits"][0]["rateLimitType"] == "REQUEST_WEIGHT"
        assert exchange.user_subscriptions() == {1: [KEY]}
        assert exchange.push_user_event(KEY, {"e": "balanceUpdate", "E": 1, "a": "BTC"}) == 1
        assert json.loads(ws.recv(5)) == {
            "subscriptionId": 0,
            "event": {"e": "balanceUpdate", "E": 1, "a": "BTC"},
        }
        again = _request(ws, "userDataStream.subscribe.signature", _params(KEY, _hmac(SECRET)))
        assert again["status"] == 400 and again["error"]["code"] == -2035
        assert _request(ws, "session.subscriptions")["result"] == [{"subscriptionId": 0}]
        assert _request(ws, "userDataStream.unsubscribe", {"subscriptionId": 0})["result"] == {}
        ended = json.loads(ws.recv(5))
        assert ended["subscriptionId"] == 0
        assert ended["event"]["e"] == "eventStreamTerminated"
        assert exchange.push_user_event(KEY, {"e": "balanceUpdate", "E": 2}) == 0


@pytest.mark.parametrize(
    ("api_key", "sign", "code", "status"),
    [
        (KEY, _hmac("wrong"), -1022, 400),
        ("unknownKey", _hmac(SECRET), -2015, 401),
        ("bad key!", _hmac(SECRET), -2014, 401),
    ],
)
def test_refusals_carry_the_documented_codes(
    exchange: FakeExchange, api_key: str, sign: Any, code: int, status: int
) -> None:
    with connect(exchange.ws_api_url) as ws:
        answer = _request(ws, "userDataStream.subscribe.signature", _params(api_key, sign))
        assert answer["status"] == status and answer["error"]["code"] == code
        assert exchange.user_subscriptions() == {1: []}


def test_timestamp_outside_the_recv_window_is_minus_1021(exchange: FakeExchange) -> None:
    exchange.set_clock_offset(10)
    with connect(exchange.ws_api_url) as ws:
        answer = _request(ws, "userDataStream.subscribe.signature", _params(KEY, _hmac(SECRET)))
        assert answer["error"]["code"] == -1021
        server_time = _request(ws, "time")["result"]["serverTime"]
        assert abs(server_time - time.time() * 1000 - 10_000) < 1000
        fixed = _params(KEY, _hmac(SECRET), timestamp=server_time)
        assert _request(ws, "userDataStream.subscribe.signature", fixed)["status"] == 200
        too_big = _params(KEY, _hmac(SECRET), timestamp=server_time, recvWindow=60001)
        assert _request(ws, "userDataStream.subscribe.signature", too_big)["error"]["code"] == -1131


def test_ed25519_and_rsa_signatures_are_verified(exchange: FakeExchange) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    exchange.add_account("edKey", public_key_pem=_public_pem(ed))
    exchange.add_account("rsaKey", public_key_pem=_public_pem(rsa_key))

    def ed_sign(data: bytes) -> str:
        return base64.b64encode(ed.sign(data)).decode()

    def rsa_sign(data: bytes) -> str:
        signature = rsa_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode()

    with connect(exchange.ws_api_url) as ws:
        for key, sign in (("edKey", ed_sign), ("rsaKey", rsa_sign)):
            answer = _request(ws, "userDataStream.subscribe.signature", _params(key, sign))
            assert answer["status"] == 200, answer
        wrong = _request(ws, "userDataStream.subscribe.signature", _params(KEY, ed_sign))
        assert wrong["error"]["code"] == -1022
        assert exchange.terminate_user_stream("edKey") == 1
        assert json.loads(ws.recv(5))["event"]["e"] == "eventStreamTerminated"
        assert exchange.server_shutdown() == 1
        assert json.loads(ws.recv(5))["event"]["e"] == "serverShutdown"


def test_the_ws_api_is_opt_in() -> None:
    with FakeExchange() as exchange, pytest.raises(RuntimeError, match="ws_api=True"):
        exchange.add_account(KEY, secret=SECRET)


def test_futures_listen_keys_over_rest_and_the_private_route(exchange: FakeExchange) -> None:
    import requests

    url = exchange.futures_rest_url + "/fapi/v1/listenKey"
    headers = {"X-MBX-APIKEY": KEY}
    assert requests.post(url, timeout=5).json()["code"] == -2015
    key = requests.post(url, headers=headers, timeout=5).json()["listenKey"]
    assert requests.post(url, headers=headers, timeout=5).json()["listenKey"] == key  # the same
    assert requests.put(url, headers=headers, timeout=5).status_code == 200
    assert exchange.listen_key(KEY) == key
    with connect(f"{exchange.private_url}?listenKey={key}") as ws:
        assert exchange.push_futures_event(KEY, {"e": "ORDER_TRADE_UPDATE", "E": 1}) == 1
        assert json.loads(ws.recv(5)) == {"e": "ORDER_TRADE_UPDATE", "E": 1}
        assert exchange.expire_listen_key(KEY) == 1
        expired = json.loads(ws.recv(5))
        assert expired["e"] == "listenKeyExpired" and expired["listenKey"] == key
    answer = requests.put(url, headers=headers, timeout=5)
    assert answer.status_code == 400 and answer.json()["code"] == -1125
    with pytest.raises(Exception, match="400"):
        connect(f"{exchange.private_url}?listenKey={key}", open_timeout=5)
    renewed = requests.post(url, headers=headers, timeout=5).json()["listenKey"]
    assert renewed != key
    assert requests.delete(url, headers=headers, timeout=5).json() == {}
    assert exchange.listen_key(KEY) is None
