"""Futures user data as the exchange serves it: listenKeys over REST, events on a private route.

USD-M and COIN-M futures still use listenKeys: ``POST /fapi/v1/listenKey`` (``/dapi/v1/...`` for
COIN-M) with the ``X-MBX-APIKEY`` header makes one (or returns the account's active one),
``PUT`` keeps it alive (60 minutes each time), ``DELETE`` ends it; ``-1125`` "This listenKey does
not exist." for a key that expired. Events of the account go, raw, to every connection opened on
``/private/ws?listenKey=<key>`` (or ``/ws/<key>``); an expired key first sends
``{"e": "listenKeyExpired", "E", "listenKey"}`` there, and then nothing more.

python-websockets serves GET requests only, so the REST side is a small HTTP/1.1 server of its
own on the exchange's loop (:meth:`ListenKeys.serve_http`, another port: ``futures_rest_url``).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .connection import Client, text_frame
from .ledger import Ledger, RestRequest
from .market import dumps
from .wsapi import Account

__all__ = ["PRIVATE_PATH", "ListenKeys"]

PRIVATE_PATH = "/private/ws"
LISTEN_KEY_PATHS = ("/fapi/v1/listenKey", "/dapi/v1/listenKey")
VALIDITY = 3600.0  # seconds a key lives after its creation or last keep-alive
_MAX_HEAD = 16 * 1024


class ListenKeys:
    """The listenKeys, their connections and the REST server (the loop thread only)."""

    def __init__(self, accounts: dict[str, Account], ledger: Ledger) -> None:
        self.accounts = accounts  # shared with the WebSocket API
        self.ledger = ledger
        self.keys: dict[str, str] = {}  # listenKey -> API key
        self.expires: dict[str, float] = {}  # listenKey -> monotonic expiry
        self.clients: dict[int, tuple[Client, str]] = {}  # connection id -> (client, key)
        self.server: asyncio.Server | None = None
        self.port = 0

    # -- the private route -------------------------------------------------------------------

    def key_of(self, path: str) -> str | None:
        """The listenKey a private-stream path names (None: not such a path)."""
        parts = urlsplit(path)
        if parts.path == PRIVATE_PATH:
            return dict(parse_qsl(parts.query)).get("listenKey", "")
        if parts.path.startswith("/ws/") and parts.path[4:] in self.keys:
            return parts.path[4:]
        return None

    def valid(self, key: str) -> bool:
        return key in self.keys and self.expires.get(key, 0.0) > time.monotonic()

    def opened(self, client: Client, key: str) -> None:
        self.clients[client.id] = (client, key)

    def closed(self, client: Client) -> None:
        self.clients.pop(client.id, None)

    def active_key(self, api_key: str) -> str | None:
        for key, owner in self.keys.items():
            if owner == api_key and self.valid(key):
                return key
        return None

    def push(self, api_key: str, event: dict[str, Any]) -> int:
        key = self.active_key(api_key)
        if key is None:
            return 0
        frame = text_frame(dumps(event).encode())
        targets = [client for client, k in self.clients.values() if k == key]
        return sum(1 for client in targets if client.write(frame))

    def expire(self, api_key: str) -> int:
        """End ``api_key``'s listenKey: ``listenKeyExpired`` to its connections, then silence."""
        key = self.active_key(api_key)
        if key is None:
            return 0
        event = {"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key}
        sent = self.push(api_key, event)
        del self.keys[key]
        self.expires.pop(key, None)
        return sent

    # -- REST --------------------------------------------------------------------------------

    async def serve_http(self, host: str, port: int = 0) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._http, host, port)
            self.port = self.server.sockets[0].getsockname()[1]

    async def stop_http(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.close()
            await server.wait_closed()

    async def _http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _MAX_HEAD:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _version = lines[0].split(" ", 2)
            pairs = (line.partition(":") for line in lines[1:] if line)
            headers = {name.strip().lower(): value.strip() for name, _, value in pairs}
            length = int(headers.get("content-length", "0") or 0)
            if length:
                await reader.readexactly(min(length, _MAX_HEAD))
            status, body = self.answer(method, target, headers.get("x-mbx-apikey"))
            data = json.dumps(body).encode()
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
                + data
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()

    def answer(self, method: str, target: str, api_key: str | None) -> tuple[int, Any]:
        path = urlsplit(target).path
        status, body = self._answer(method, path, api_key)
        self.ledger.rest(RestRequest(time.monotonic(), f"{method} {path}", {}, status, 1))
        return status, body

    def _answer(self, method: str, path: str, api_key: str | None) -> tuple[int, Any]:
        if path not in LISTEN_KEY_PATHS:
            return 404, {"code": -1100, "msg": "unknown path"}
        if not api_key or api_key not in self.accounts:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
        key = self.active_key(api_key)
        if method == "POST":
            if key is None:
                key = secrets.token_hex(32)
                self.keys[key] = api_key
            self.expires[key] = time.monotonic() + VALIDITY
            return 200, {"listenKey": key}
        if method == "PUT":
            if key is None:
                return 400, {"code": -1125, "msg": "This listenKey does not exist."}
            self.expires[key] = time.monotonic() + VALIDITY
            return 200, {"listenKey": key}
        if method == "DELETE":
            if key is not None:
                del self.keys[key]
                self.expires.pop(key, None)
            return 200, {}
        return 405, {"code": -1100, "msg": f"method {method} not allowed"}
