"""Which connections carry which streams, and sending to them (the server's loop thread only).

A message is encoded once per shape (raw, or enveloped for combined connections) and the same
frame bytes go to every connection carrying the stream; the periodic publisher makes one write
per connection per tick, whatever the number of streams it carries.
"""

from __future__ import annotations

import asyncio
import time

from .connection import Client, binary_frame, text_frame
from .control import envelope
from .ledger import Ledger
from .market import Market, MarketMessage, dumps
from .surface import to_microseconds

__all__ = ["MARKET_GOES_ON", "Broadcaster"]

# Seconds the periodic publisher keeps making a stream's messages after its last connection left:
# the market does not stop when a client disconnects, so a client that reconnects meanwhile sees
# the gap it would see on the real exchange.
MARKET_GOES_ON = 30.0


class Broadcaster:
    """The open connections, the streams each carries, and the publisher."""

    def __init__(self, market: Market, ledger: Ledger, rate: float) -> None:
        self.market = market
        self.ledger = ledger
        self.rate = rate
        self.clients: dict[int, Client] = {}  # open connections by id
        self.carriers: dict[str, dict[Client, None]] = {}  # stream -> connections carrying it
        self.left: dict[str, float] = {}  # stream -> when its last connection left (monotonic)
        self.ticker: asyncio.Task[None] | None = None

    # -- who carries what ------------------------------------------------------------------------

    def opened(self, client: Client) -> None:
        self.clients[client.id] = client
        for stream in client.streams:
            self.carriers.setdefault(stream, {})[client] = None
        self.ledger.opened(client.id, client.path, client.streams)

    def closed(self, client: Client, close_code: int | None) -> None:
        self.clients.pop(client.id, None)
        for stream in client.streams:
            self._drop_carrier(client, stream)
        self.ledger.closed(client.id, close_code)

    def carry(self, client: Client, streams: list[str]) -> None:
        for stream in streams:
            client.streams[stream] = None
            self.carriers.setdefault(stream, {})[client] = None
        if streams:
            self.ledger.carried(client.id, streams, ())

    def uncarry(self, client: Client, streams: list[str]) -> None:
        for stream in streams:
            del client.streams[stream]
            client.silenced.discard(stream)
            self._drop_carrier(client, stream)
        if streams:
            self.ledger.carried(client.id, (), streams)

    def _drop_carrier(self, client: Client, stream: str) -> None:
        carriers = self.carriers.get(stream)
        if carriers is not None:
            carriers.pop(client, None)
            if not carriers:
                del self.carriers[stream]
                self.left[stream] = time.monotonic()

    def targets(self, stream: str | None) -> list[Client]:
        """The connections carrying ``stream`` (all open connections when None)."""
        if stream is None:
            return list(self.clients.values())
        return list(self.carriers.get(stream, ()))

    # -- sending ---------------------------------------------------------------------------------

    @staticmethod
    def _frames(
        client: Client,
        stream: str,
        texts: list[MarketMessage],
        cache: dict[tuple[bool, bool], list[bytes]],
    ) -> list[bytes]:
        shape = (client.combined, client.micro)
        frames = cache.get(shape)
        if frames is None:
            frames = []
            for text in texts:
                if isinstance(text, bytes):  # SBE: no envelope, even on combined connections
                    frames.append(binary_frame(text))
                    continue
                if client.micro:
                    text = to_microseconds(text)
                frames.append(
                    text_frame((envelope(stream, text) if client.combined else text).encode())
                )
            cache[shape] = frames
        return frames

    def send(self, stream: str, texts: list[MarketMessage]) -> int:
        """Send encoded payloads to every connection carrying ``stream``; return how many."""
        cache: dict[tuple[bool, bool], list[bytes]] = {}
        reached = 0
        for client in self.carriers.get(stream, ()):
            if client.quiet(stream):
                continue
            if client.write(b"".join(self._frames(client, stream, texts, cache))):
                reached += 1
        if reached:
            self.ledger.sent({stream: reached * len(texts)})
        return reached

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        if rate > 0 and self.ticker is None:
            self.ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    async def _tick_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while self.rate > 0:
                self.tick()
                next_at += 1 / self.rate
                delay = next_at - loop.time()
                if delay < -1.0:  # over a second behind: carry on from now
                    next_at, delay = loop.time(), 0.0
                await asyncio.sleep(max(0.0, delay))
        finally:
            self.ticker = None

    def tick(self) -> None:
        """Publish every stream carried by an open connection once, one write per connection."""
        batches: dict[Client, list[tuple[str, int, bytes]]] = {}
        now = time.monotonic()
        for stream, since in list(self.left.items()):  # nobody reads it: the market goes on
            if stream in self.carriers or now - since > MARKET_GOES_ON:
                del self.left[stream]
            else:
                self.market.publish(stream)
        for stream, carriers in self.carriers.items():
            texts = self.market.publish(stream)
            cache: dict[tuple[bool, bool], list[bytes]] = {}
            for client in carriers:
                if client.quiet(stream):
                    continue
                frames = self._frames(client, stream, texts, cache)
                batches.setdefault(client, []).append((stream, len(frames), b"".join(frames)))
        sent: dict[str, int] = {}
        for client, batch in batches.items():
            if client.write(b"".join(item[2] for item in batch)):
                for stream, count, _ in batch:
                    sent[stream] = sent.get(stream, 0) + count
        if sent:
            self.ledger.sent(sent)

    def server_shutdown(self, enveloped: bool) -> list[Client]:
        """Send ``serverShutdown`` on every open connection (bare, or as the ``data`` of an
        envelope naming one of its streams when ``enveloped``); return those connections."""
        text = dumps({"e": "serverShutdown", "E": int(time.time() * 1000)})
        targets = [c for c in self.clients.values() if not c.closing]
        for client in targets:
            body = text
            if enveloped and client.streams:
                body = envelope(next(iter(client.streams)), text)
            if client.path.startswith("/ws-api/"):  # the WebSocket API's event shape
                body = '{"event":' + text + "}"
            client.write(text_frame(body.encode()))
        return targets
