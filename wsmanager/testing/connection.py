"""The one hook into python-websockets, and what the exchange keeps per connection.

:class:`HookedConnection` (given to ``serve(create_connection=...)``) sees every frame the
client sends (to count text, binary, ping and pong frames, as Binance counts client messages)
and the first bytes of the HTTP request (to answer an over-long request line with 414). The
hook checks itself: the server compares the data frames it counted with the messages its
handler received, and reports a hook that stopped being called.

Server frames are unmasked, so one encoded frame is written as is to every connection carrying
a stream (:func:`text_frame`), instead of encoding it once per connection.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from .control import Route
from .rules import SlidingWindow

__all__ = [
    "COUNTED_OPCODES",
    "WEBSOCKETS_MAX_LINE",
    "Client",
    "FrameListener",
    "HookedConnection",
    "binary_frame",
    "text_frame",
]

COUNTED_OPCODES = frozenset({Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG})
WEBSOCKETS_MAX_LINE = 8190  # python-websockets' request line limit (8192 with CRLF)

if not callable(getattr(ServerConnection, "process_event", None)):  # pragma: no cover
    raise ImportError("python-websockets changed: ServerConnection.process_event is gone")


class FrameListener(Protocol):
    def client_frame(self, connection: HookedConnection, frame: Frame) -> None: ...

    def request_line(self, connection: HookedConnection, length: int) -> bool:
        """The request line is ``length`` bytes long: True when the listener refused it."""


class HookedConnection(ServerConnection):
    """A server connection that reports client frames to its ``listener``."""

    listener: FrameListener  # set on the subclass the server makes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client: Client | None = None
        self.route: Route | None = None
        self.data_frames = 0  # text/binary messages the hook saw (for the self-check)
        self._head = bytearray()  # request bytes until the end of the request line
        self._line_checked = False
        self._discarding = False

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame):
            if event.opcode in (Opcode.TEXT, Opcode.BINARY):
                self.data_frames += 1
            if event.opcode in COUNTED_OPCODES:
                self.listener.client_frame(self, event)
        super().process_event(event)

    def data_received(self, data: bytes) -> None:
        if self._line_checked:
            if not self._discarding:
                super().data_received(data)
            return
        self._head += data
        end = self._head.find(b"\r\n")
        if end < 0 and len(self._head) <= WEBSOCKETS_MAX_LINE:
            super().data_received(data)  # the request line is not complete yet
            return
        self._line_checked = True
        length = end if end >= 0 else len(self._head)
        self._head = bytearray()
        if not self.listener.request_line(self, length):
            super().data_received(data)

    def discard_input(self) -> None:
        """After an HTTP error written by hand: send FIN, ignore the rest of the request, and
        close when the client does (or after a second), so it can read the answer."""
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(1.0, self.transport.close)
        else:
            self.transport.close()

    def eof_received(self) -> None:
        if self._discarding:
            self.transport.close()
            return None
        return super().eof_received()

    def write_frame(self, data: bytes) -> bool:
        """Write pre-encoded frames; False when the connection is not open for data."""
        if self.protocol.state is not State.OPEN:
            return False
        client = self.client
        if client is not None and client.fragmenting:
            return False
        self.transport.write(data)
        return True


def text_frame(payload: bytes, first: int = 0x81) -> bytes:
    """A final, unmasked text frame (server to client)."""
    n = len(payload)
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return bytes((first, 0x7E)) + struct.pack("!H", n) + payload
    return bytes((first, 0x7F)) + struct.pack("!Q", n) + payload


def binary_frame(payload: bytes) -> bytes:
    """A final, unmasked binary frame (server to client)."""
    return text_frame(payload, 0x82)


@dataclass(eq=False)
class Client:
    """One accepted connection (the server's loop thread only)."""

    id: int
    ws: HookedConnection
    path: str
    ip: str
    streams: dict[str, None]  # ordered: LIST_SUBSCRIPTIONS answers in this order
    combined: bool  # payloads enveloped as {"stream", "data"}
    window: SlidingWindow | None  # client messages per second, when that rule is on
    registered: bool = False  # in the ledger (frames before that are kept in early_frames)
    early_frames: list[float] = field(default_factory=list)
    silenced: set[str] = field(default_factory=set)
    stalled: bool = False
    closing: bool = False
    fragmenting: int = 0  # send_raw of a fragmented message in progress
    received: int = 0  # messages the handler received (for the hook's self-check)
    handles: list[asyncio.TimerHandle] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    micro: bool = False  # timeUnit=MICROSECOND: times in the payloads in microseconds
    routed: bool = False  # USD-M: only the streams of ``route`` are sent (the root: none)
    route: str | None = None  # "public", "market", or None (the decommissioned root)
    route_of: Callable[[str], str | None] | None = None

    def write(self, data: bytes) -> bool:
        return self.ws.write_frame(data)

    def quiet(self, stream: str) -> bool:
        """Nothing of ``stream`` goes out here: stalled, silenced, or on the wrong route."""
        if self.stalled or stream in self.silenced:
            return True
        return self.routed and (self.route is None or self.route_of(stream) != self.route)  # type: ignore[misc]

    def withheld(self) -> list[str]:
        """The streams this connection carries and never gets (the wrong route, or the root)."""
        if not self.routed:
            return []
        return [s for s in self.streams if self.route is None or self.route_of(s) != self.route]  # type: ignore[misc]
