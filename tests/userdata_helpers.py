"""Keys and small helpers shared by the user data tests."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from wsmanager.testing import FakeExchange

HMAC_KEY = "HmacApiKey0123456789"
HMAC_SECRET = "hmac-SECRET-do-not-leak-7f3a9c"


def private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def public_pem(key: Any) -> bytes:
    return bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def new_ed25519() -> Any:
    return ed25519.Ed25519PrivateKey.generate()


def new_rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def methods(exchange: FakeExchange, method: str | None = None) -> list[dict[str, Any]]:
    """The WebSocket API requests the exchange received (all, or of ``method``)."""
    return [
        entry.request
        for entry in exchange.control_log()
        if isinstance(entry.request, dict)
        and (method is None or entry.request.get("method") == method)
    ]


def event(number: int, kind: str = "executionReport") -> dict[str, Any]:
    return {"e": kind, "E": 1_700_000_000_000 + number, "i": number}
