"""A connection's data path: from the frames its read loop parsed to its streams' feeds.

:meth:`DataPath.deliver` takes every whole message of one read and, in the order the frames
came, decodes each JSON payload once (orjson when installed), routes it (a combined stream's
envelope by its ``stream``, a raw connection's payload to its one stream), adds the typed form for
the feeds whose subscribers asked for it (decoded from the frame's bytes, :mod:`wsmanager.typed`)
and buffers it in its stream's feed, all under one hold of the callback thread's lock, where the
reader waits while a buffer is full (back-pressure, :class:`~wsmanager.core.flow.Pressure`).
One message at a time, not grouped by stream: each is handled while it is still in the CPU's
cache, which keeps many interleaved streams close to one stream's speed. What is not a stream's
message (answers to ``SUBSCRIBE`` for the read loop, ``serverShutdown`` for the handover) is
routed after the lock is released. Binary frames are SBE market data with ``encoding="sbe"``
(decoded, routed and buffered the same way, :meth:`DataPath._deliver_binary`), else skipped.

:class:`~wsmanager.net.connection.Connection` inherits it; it is kept apart so that the hot path
reads on its own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .. import decode as _decode_module
from ..config import WSManagerConfig
from ..core.feed import FeedLoop, StreamFeed
from ..core.flow import Decoded, Pressure
from ..core.targets import Target
from ..decode import decode_json
from ..sbe import SbeDecodeError, decode_frame
from . import _wsclient
from .boundary import Attempt

if TYPE_CHECKING:
    from .readloop import ReadLoop

__all__ = ["DataPath"]

log = logging.getLogger("wsmanager")


class DataPath:
    """The data path of a :class:`~wsmanager.net.connection.Connection` (its reader thread)."""

    name: str
    config: WSManagerConfig
    target: Target
    feeds: Mapping[str, StreamFeed]
    epoch: object
    messages_received: int
    invalid_messages: int
    _attempt: Attempt

    def shutdown_announced(self) -> None:
        raise NotImplementedError

    def deliver(self, messages: list[bytes], opcode: int, pressure: Pressure | None) -> None:
        """Whole messages (of one ``opcode``) the read loop parsed in one pass: each decoded,
        routed and handed to its stream's feed in the order they came, under one hold of the
        callback thread's lock (the reader waits there while a feed is full); what is not a
        stream's message is routed afterwards, outside that lock."""
        self.messages_received += len(messages)
        if opcode != _wsclient.OPCODE_TEXT:
            self._deliver_binary(messages, pressure)
            return
        others: list[Any] = []  # answers, serverShutdown, the unexpected: routed after the lock
        heard: dict[StreamFeed, Callable[[bytes, bool], Any] | None] = {}  # typed decoders
        # The feeds of a connection share their group's callback thread (one lock).
        feeds = self.feeds
        delivery = next(iter(feeds.values())).loop if feeds else None
        with delivery.lock if delivery is not None else contextlib.nullcontext():
            self._offer_all(messages, delivery, pressure, others, heard)
        for feed in heard:  # a dropping episode's warning, now that no lock is held
            feed.tell_drops()
        loop = self._attempt.loop
        for value, size, data in others:
            if isinstance(value, BaseException):
                self.invalid_messages += 1
                log.warning("connection %s: skipped a frame that is not JSON: %r", self.name, value)
                continue
            routed = self._route(value, loop)
            if routed is not None:
                feed, payload = routed
                decode = feed.typed_decoder()
                if decode is not None:
                    payload = _typed(decode, payload, data, self.target.combined)
                feed.offer(self, self.epoch, payload, size, pressure)

    def _offer_all(
        self,
        messages: list[bytes],
        delivery: FeedLoop | None,
        pressure: Pressure | None,
        others: list[Any],
        heard: dict[StreamFeed, Callable[[bytes, bool], Any] | None],
    ) -> None:
        """The hot loop of :meth:`deliver`, under ``delivery.lock`` (None: no stream here)."""
        combined = self.target.combined
        feeds = self.feeds
        raw_feed = None if combined else feeds.get(self.name)
        epoch = self.epoch
        loads = decode_json
        if loads is _ORJSON_WRAPPER and _ORJSON_LOADS is not None:
            loads = _ORJSON_LOADS  # the same function, without the Python call around it
        now, wall = time.monotonic(), time.time()  # when this read came
        last_feed: StreamFeed | None = None
        decode: Callable[[bytes, bool], Any] | None = None
        for data in messages:
            try:
                value = loads(data)
            except BaseException as exc:  # ValueError, RecursionError, MemoryError...
                others.append((exc, 0, data))  # logged after the lock (handlers are user code)
                continue
            # A stream's envelope, or a raw stream's payload; anything else (serverShutdown
            # included) goes to _route after the lock.
            feed: StreamFeed | None = None
            payload: Any = value
            if type(value) is dict:
                if combined:
                    name = value.get("stream")
                    payload = value.get("data")
                    if (
                        type(payload) is dict
                        and type(name) is str
                        and payload.get("e") != "serverShutdown"
                    ):
                        feed = feeds.get(name)
                        if feed is None:
                            continue  # a stream this connection has left
                elif value.get("e") != "serverShutdown":
                    feed = raw_feed
            if feed is None or feed.loop is not delivery:
                others.append((value, len(data), data))
                continue
            if feed is not last_feed:
                last_feed = feed
                if feed in heard:
                    decode = heard[feed]
                else:  # the first message of this stream in this read
                    decode = heard[feed] = feed.typed_decoder()
                    feed.heard_locked(now, wall)
            if decode is not None:
                payload = _typed(decode, payload, data, combined)
            feed.offer_locked(self, epoch, payload, len(data), pressure)

    def _deliver_binary(self, messages: list[bytes], pressure: Pressure | None) -> None:
        """Binary frames: with ``encoding="sbe"``, each decoded payload to the feed of the
        stream it names (no envelope on combined connections), in order, under one hold of the
        callback thread's lock, with back-pressure as for JSON; else skipped."""
        skipped: list[str] = []
        heard: set[StreamFeed] = set()
        if self.config.encoding != "sbe":
            skipped = [f"a binary frame of {len(data)} bytes" for data in messages]
        elif self.feeds:
            feeds = self.feeds
            own = None if self.target.combined else self.name
            epoch = self.epoch
            delivery = next(iter(feeds.values())).loop
            now, wall = time.monotonic(), time.time()
            with delivery.lock:
                for data in messages:
                    try:
                        decoded = decode_frame(data)
                    except SbeDecodeError as exc:
                        skipped.append(f"an SBE frame: {exc}")
                        continue
                    size = len(data) // max(1, len(decoded))
                    for stream, payload in decoded:
                        feed = feeds.get(own or stream)
                        if feed is not None and feed.loop is delivery:
                            heard.add(feed)
                            feed.heard_locked(now, wall)
                            feed.offer_locked(self, epoch, payload, size, pressure)
        for feed in heard:
            feed.tell_drops()
        for what in skipped:  # after the lock: logging handlers are user code
            self.invalid_messages += 1
            log.warning("connection %s: skipped %s", self.name, what)

    def _on_data(self, app: _wsclient.App, data: bytes, opcode: int, fin: bool) -> None:
        """websocket-client's own reading path (its frame reader could not be replaced): one
        message at a time through :meth:`deliver`, its size checked late."""
        loop = self._attempt.loop
        if opcode == _wsclient.OPCODE_TEXT and loop is not None and loop.reader is None:
            too_big = _wsclient.over_limit(data, self.config.max_message_size)
            if too_big is not None:
                self.messages_received += 1
                loop.failure = too_big
                return
        self.deliver([data], opcode, loop.pressure if loop is not None else None)

    def _route(self, value: Any, loop: ReadLoop | None) -> tuple[StreamFeed, Any] | None:
        """The feed a decoded message goes to, and its payload; None when it is not a stream's
        (an answer, ``serverShutdown``, or skipped)."""
        if type(value) is dict:
            if self.target.combined:
                name = value.get("stream")
                if type(name) is str and "data" in value:
                    payload = value["data"]
                    if type(payload) is dict and payload.get("e") == "serverShutdown":
                        self.shutdown_announced()
                        return None
                    feed = self.feeds.get(name)
                    return None if feed is None else (feed, payload)
                if "id" in value and ("result" in value or "error" in value):
                    if loop is not None:
                        loop.answer(value)
                    return None
            if value.get("e") == "serverShutdown":
                self.shutdown_announced()
                return None
        if not self.target.combined:
            feed = self.feeds.get(self.name)
            return None if feed is None else (feed, value)
        self.invalid_messages += 1
        log.warning(
            "connection %s: skipped a message that is not a stream's: %.200r", self.name, value
        )
        return None


_ORJSON_WRAPPER = getattr(_decode_module, "decode_json_orjson", None)
_ORJSON_LOADS: Callable[[bytes], Any] | None = getattr(
    getattr(_decode_module, "orjson", None), "loads", None
)


def _typed(decode: Callable[[bytes, bool], Any], payload: Any, data: bytes, enveloped: bool) -> Any:
    """``payload`` with its typed form, decoded from the frame's bytes (not from the dict)."""
    if type(payload) is not dict:
        return payload
    typed = decode(data, enveloped)
    if typed is None:  # not the documented shape, or another event: the dict is delivered
        return payload
    both = Decoded(payload)
    both.typed = typed
    return both
