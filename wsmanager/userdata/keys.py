"""API credentials for signed requests (pure: no I/O but reading a key file).

:class:`Credentials` holds an API key with either an HMAC secret or an Ed25519/RSA private key
(PEM bytes or text, or the path of a PEM file) and signs a payload as the exchange verifies it:
HMAC-SHA256 as lowercase hex, Ed25519 and RSA (PKCS#1 v1.5, SHA-256) as base64. The secret and the
private key stay inside: ``repr``, ``str`` and every error show the API key's first 4 characters
only (:func:`mask`), and pickling is refused. Ed25519 and RSA need ``cryptography``
(``pip install wsmanager[userdata]``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import Any

__all__ = ["Credentials", "load_private_key", "mask"]

KINDS = ("hmac", "ed25519", "rsa")


def mask(api_key: str) -> str:
    """The API key as it may be shown: its first 4 characters, then an ellipsis."""
    return f"{api_key[:4]}…"


def _is_pem(value: str | bytes) -> bool:
    head = value.lstrip()[:11]
    return head == (b"-----BEGIN " if isinstance(head, bytes) else "-----BEGIN ")


def load_private_key(key: str | bytes | os.PathLike[str], password: bytes | None = None) -> Any:
    """An Ed25519 or RSA private key from PEM bytes or text, or from the path of a PEM file.

    Raises ``ValueError`` (naming the file, never its content) when it is not such a key."""
    try:
        from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Ed25519 and RSA keys need the cryptography package: pip install wsmanager[userdata]"
        ) from None
    where = "private_key"
    if isinstance(key, os.PathLike) or (isinstance(key, str) and not _is_pem(key)):
        where = f"private key file {os.fspath(key)!r}"
        try:
            with open(key, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ValueError(f"{where}: cannot be read ({exc.strerror})") from None
    elif isinstance(key, (str, bytes)):
        data = key.encode() if isinstance(key, str) else key
    else:
        kind = type(key).__name__
        raise TypeError(f"private_key must be PEM bytes, PEM text or a path, not {kind}")
    try:
        loaded = load_pem_private_key(data, password=password)
    except (ValueError, TypeError) as exc:
        reason = "it is encrypted" if "password" in str(exc).lower() else "not a PEM private key"
        raise ValueError(f"{where}: {reason}") from None
    except Exception:  # cryptography's UnsupportedAlgorithm and the like
        raise ValueError(f"{where}: not a supported private key") from None
    if not isinstance(loaded, (ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise ValueError(f"{where}: an Ed25519 or RSA key is needed, not {type(loaded).__name__}")
    return loaded


class Credentials:
    """An API key and what signs for it. Shows nothing but ``mask(api_key)``."""

    __slots__ = ("_key", "_secret", "api_key", "kind")

    def __init__(
        self,
        api_key: str,
        *,
        api_secret: str | bytes | None = None,
        private_key: str | bytes | os.PathLike[str] | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key or api_key.strip() != api_key:
            raise ValueError("api_key must be a non-empty string without surrounding spaces")
        if (api_secret is None) == (private_key is None):
            raise ValueError(
                f"API key {mask(api_key)}: give exactly one of api_secret= (HMAC) or "
                "private_key= (Ed25519 or RSA)"
            )
        self.api_key = api_key
        self._secret: bytes | None = None
        self._key: Any = None
        if api_secret is not None:
            if not isinstance(api_secret, (str, bytes)) or not api_secret:
                raise ValueError(f"API key {mask(api_key)}: api_secret must be a non-empty string")
            self._secret = api_secret.encode() if isinstance(api_secret, str) else api_secret
            self.kind = "hmac"
        else:
            assert private_key is not None
            self._key = load_private_key(private_key)
            from cryptography.hazmat.primitives.asymmetric import ed25519

            self.kind = "ed25519" if isinstance(self._key, ed25519.Ed25519PrivateKey) else "rsa"

    @property
    def masked(self) -> str:
        return mask(self.api_key)

    def sign(self, payload: str) -> str:
        """The signature of ``payload`` (UTF-8) as the exchange expects it."""
        data = payload.encode()
        if self._secret is not None:
            return hmac.new(self._secret, data, hashlib.sha256).hexdigest()
        if self.kind == "ed25519":
            return base64.b64encode(self._key.sign(data)).decode()
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        raw = self._key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(raw).decode()

    def __repr__(self) -> str:
        return f"Credentials(api_key={self.masked!r}, kind={self.kind!r})"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("Credentials cannot be pickled (they hold a secret)")
