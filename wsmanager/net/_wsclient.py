"""Every use of websocket-client's undocumented internals, in one module that checks itself.

What we rely on, and why:

- ``WebSocketApp.create_dispatcher`` (undocumented, called by ``run_forever`` in 1.8 and 1.9): we
  return our own read loop (:class:`wsmanager.net.readloop.ReadLoop`), which sends the pings, paces
  client messages and never blocks inside a frame. Without it wsmanager cannot work, so
  :func:`check_loop_installed` fails the connection loudly if ``run_forever`` did not call it.
- ``WebSocket.frame_buffer`` / ``WebSocket.cont_frame`` and the classes
  ``websocket._abnf.frame_buffer`` / ``continuous_frame``: we swap in a frame reader that reads
  what the socket has (bounded: :data:`READ_BOUND` beyond the frame in progress) and parses
  every whole frame in one pass (:meth:`FastFrameBuffer.parse`: data messages, fragments joined
  and bounded by their running total as they arrive, the last ping for the read loop to answer
  through its message gate), refuses a frame over ``max_message_size`` from its header, and
  never blocks inside a frame that trickles in. A close frame is left to websocket-client's own
  ``recv_frame`` path, which answers it and ends ``run_forever`` as it always does. The
  reassembler swapped into ``cont_frame`` (linear, bounded) serves that path.

At import we check the version range and that those names exist; after each connection opens,
:func:`install_fast_reader` checks that the swap took. If either check fails, the connection runs on
websocket-client's own (public) frame reader and one warning says so: the size limit is then
applied when a message has arrived (:func:`over_limit`), and a frame that trickles in is bounded by
a read deadline of the socket guard instead — slower, never silent.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

import websocket

__all__ = [
    "FAST_READER_AVAILABLE",
    "READ_BOUND",
    "SUPPORTED_RANGE",
    "App",
    "FastFrameBuffer",
    "MessageTooBigError",
    "install_fast_reader",
    "version",
]

log = logging.getLogger("wsmanager")

SUPPORTED_RANGE = ((1, 8, 0), (2, 0, 0))  # [lowest, highest) websocket-client we test
_READ_SIZE = 256 * 1024  # bytes per recv(): fewer, larger reads per wake-up
READ_BOUND = 2 * 1024 * 1024  # bytes buffered per connection before it parses and delivers

OPCODE_CONT = 0x0
OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
OPCODE_CLOSE = 0x8
OPCODE_PING = 0x9
OPCODE_PONG = 0xA
_CONTROL = (OPCODE_PING, OPCODE_PONG)


def version() -> tuple[int, int, int]:
    """websocket-client's version as a tuple (0, 0, 0 if it cannot be read)."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", getattr(websocket, "__version__", ""))
    return (int(match[1]), int(match[2]), int(match[3])) if match else (0, 0, 0)


def _private_names_present() -> bool:
    abnf = getattr(websocket, "_abnf", None)
    return (
        abnf is not None
        and isinstance(getattr(abnf, "frame_buffer", None), type)
        and isinstance(getattr(abnf, "continuous_frame", None), type)
        and callable(getattr(websocket.WebSocketApp, "create_dispatcher", None))
        and callable(getattr(websocket.ABNF, "mask", None))
    )


_in_range = SUPPORTED_RANGE[0] <= version() < SUPPORTED_RANGE[1]
FAST_READER_AVAILABLE = _in_range and _private_names_present()
if not _in_range:  # pragma: no cover - depends on the environment
    log.warning(
        "websocket-client %s is outside the tested range [%s, %s); using its public frame reader",
        getattr(websocket, "__version__", "?"),
        ".".join(map(str, SUPPORTED_RANGE[0])),
        ".".join(map(str, SUPPORTED_RANGE[1])),
    )

_warned_fallback = threading.Event()


def warn_fallback_once(reason: str) -> None:
    if not _warned_fallback.is_set():
        _warned_fallback.set()
        log.warning(
            "websocket-client %s: %s; wsmanager uses websocket-client's own frame reader "
            "(slower; the message size limit is applied after a message has arrived)",
            getattr(websocket, "__version__", "?"),
            reason,
        )


class MessageTooBigError(websocket.WebSocketProtocolException):  # type: ignore[misc]
    """A frame, or a fragmented message, longer than ``max_message_size``."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds max_message_size ({limit})")
        self.size = size
        self.limit = limit


def over_limit(data: bytes, limit: int) -> MessageTooBigError | None:
    """The size check of the public path, applied to a message that has arrived."""
    return MessageTooBigError(len(data), limit) if len(data) > limit else None


_FrameBufferBase: Any = websocket._abnf.frame_buffer if FAST_READER_AVAILABLE else object
_ContinuationBase: Any = websocket._abnf.continuous_frame if FAST_READER_AVAILABLE else object


class FastFrameBuffer(_FrameBufferBase):  # type: ignore[misc]
    """websocket-client's frame reader, replaced.

    The read loop's side: :meth:`feed` reads whatever the socket has (never blocking, never more
    than :data:`READ_BOUND` buffered beyond the frame in progress) and :meth:`parse` turns every
    whole frame buffered into messages in one pass: data frames (fragments joined, bounded by
    their running total as they arrive), pings remembered for the read loop to answer through
    its message gate. A close frame is left in the buffer for websocket-client
    (``recv_frame``), which answers it and ends the connection as it always does.
    """

    def __init__(self, sock: Any, leftover: bytes, limit: int) -> None:
        super().__init__(self._recv_blocking, skip_utf8_validation=True)
        self._sock = sock
        self._limit = limit
        self._buffer = bytes(leftover)
        self._pos = 0
        self._chunks: list[bytes] = []  # read since the last parse (joined once per parse)
        self._chunked = 0
        self._fragments: list[bytes] = []  # the message being reassembled
        self._fragment_size = 0
        self._fragment_opcode = 0
        self.opcode = OPCODE_TEXT  # the opcode of the messages the last parse() returned
        self.ping: bytes | None = None  # the latest ping's payload, not answered yet
        self.pings = 0
        self.close_next = False  # a close frame waits at the head (for recv_frame)
        self.frames_parsed = 0  # the self-check: websocket-client really reads through us

    # -- the read loop's side --------------------------------------------------------------------

    def feed(self) -> int:
        """Append what the socket has now; return the byte count, -1 at end of stream.

        Reads stop at :data:`READ_BOUND` bytes buffered (more only for a frame in progress
        that is longer, never more than ``max_message_size``): however fast the server writes,
        a connection holds a few MiB between its socket and its streams' buffers."""
        sock = self._sock
        total = 0
        bound = max(READ_BOUND, self._frame_needs())
        timeout = sock.gettimeout()
        sock.settimeout(0)
        try:
            while self.buffered() < bound:
                try:
                    data = sock.recv(_READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ssl.SSLWantReadError is an OSError too
                    if type(exc).__name__ in ("SSLWantReadError", "SSLWantWriteError"):
                        break
                    raise
                if not data:
                    return total or -1
                self._chunks.append(data)
                self._chunked += len(data)
                total += len(data)
                pending = getattr(sock, "pending", None)
                if len(data) < _READ_SIZE and not (pending is not None and pending()):
                    break
        finally:
            sock.settimeout(timeout)
        return total

    def full(self) -> bool:
        """As much is buffered as :meth:`feed` will hold: parse before reading more."""
        return self.buffered() >= max(READ_BOUND, self._frame_needs())

    def buffered(self) -> int:
        return len(self._buffer) - self._pos + self._chunked

    def _join(self) -> bytes:
        if self._chunks:
            rest = self._buffer[self._pos :] if self._pos else self._buffer
            self._buffer = rest + b"".join(self._chunks) if rest else b"".join(self._chunks)
            self._pos = 0
            self._chunks.clear()
            self._chunked = 0
        return self._buffer

    def _frame_needs(self) -> int:
        """Bytes the frame at the head needs in all (0 when its header is not in yet)."""
        buffer = self._join()
        header = _header(buffer, self._pos, len(buffer))
        if header is None:
            return 0
        return min(header[1], self._limit) + header[2]

    def ready(self) -> bool:
        """A whole frame (or one over the limit) is buffered: :meth:`parse` makes progress."""
        buffer = self._join()
        pos = self._pos
        header = _header(buffer, pos, len(buffer))
        if header is None:
            return False
        _first, length, size = header
        return length + self._fragment_size > self._limit or len(buffer) - pos >= size + length

    def parse(self, out: list[bytes]) -> int:
        """Every whole frame buffered, in one pass: append each whole data message's payload to
        ``out``; remember the last ping (:attr:`ping`); stop before a close frame
        (:attr:`close_next`), and before a data message of another opcode than the first one's:
        the messages of one call share :attr:`opcode` (text or binary; a list of payloads, not
        of tuples, which the cyclic garbage collector would walk). Return the number of frames
        consumed.

        Raises :class:`MessageTooBigError` for a frame, or a fragmented message so far, over
        ``max_message_size``, and ``WebSocketProtocolException`` for a frame RFC 6455 forbids
        (as websocket-client's own reader would)."""
        buffer = self._join()
        pos = self._pos
        end = len(buffer)
        limit = self._limit
        frames = 0
        append = out.append
        try:
            while end - pos >= 2:
                first = buffer[pos]
                second = buffer[pos + 1]
                length = second & 0x7F
                size = 2
                if length == 126:
                    if end - pos < 4:
                        break
                    length = buffer[pos + 2] << 8 | buffer[pos + 3]
                    size = 4
                elif length == 127:
                    if end - pos < 10:
                        break
                    length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
                    size = 10
                if second & 0x80:
                    size += 4
                if length + self._fragment_size > limit:
                    raise MessageTooBigError(length + self._fragment_size, limit)
                stop = pos + size + length
                if stop > end:
                    break
                opcode = first & 0x0F
                if first & 0x70:
                    raise websocket.WebSocketProtocolException("rsv is not implemented, yet")
                payload = buffer[pos + size : stop]
                if second & 0x80:
                    payload = websocket.ABNF.mask(buffer[pos + size - 4 : pos + size], payload)
                if first & 0x80 and opcode in (OPCODE_TEXT, OPCODE_BINARY) and not self._fragments:
                    if opcode != self.opcode:
                        if out:
                            break  # the next call returns the messages of this opcode
                        self.opcode = opcode
                    append(payload)
                elif opcode >= 8:
                    if opcode == OPCODE_CLOSE:
                        self.close_next = True
                        break  # websocket-client answers it (recv_frame) and ends the connection
                    if not first & 0x80 or length > 125 or opcode not in _CONTROL:
                        raise websocket.WebSocketProtocolException(f"Invalid frame {opcode}")
                    if opcode == OPCODE_PING:
                        self.ping = payload
                        self.pings += 1
                else:
                    if (  # the last fragment: it completes a message of another opcode
                        first & 0x80
                        and opcode == OPCODE_CONT
                        and self._fragments
                        and self._fragment_opcode != self.opcode
                    ):
                        if out:
                            break
                        self.opcode = self._fragment_opcode
                    self._fragment(first, opcode, payload, append)
                pos = stop
                frames += 1
        finally:
            self._pos = pos
            if pos == len(buffer):
                self._buffer = b""
                self._pos = 0
            self.frames_parsed += frames
        return frames

    def _fragment(
        self, first: int, opcode: int, payload: bytes, append: Callable[[bytes], None]
    ) -> None:
        if opcode == OPCODE_CONT:
            if not self._fragments:
                raise websocket.WebSocketProtocolException("Illegal frame")
        elif opcode in (OPCODE_TEXT, OPCODE_BINARY):
            if self._fragments:
                raise websocket.WebSocketProtocolException("Illegal frame")
            self._fragment_opcode = opcode
        else:
            raise websocket.WebSocketProtocolException(f"Invalid opcode {opcode!r}")
        self._fragments.append(payload)
        self._fragment_size += len(payload)
        if first & 0x80:
            append(b"".join(self._fragments))
            self._fragments.clear()
            self._fragment_size = 0

    def peek(self) -> tuple[int, bytes] | None:
        """(opcode, unmasked payload) of the next whole frame, without consuming it."""
        buffer, pos = self._join(), self._pos
        header = _header(buffer, pos, len(buffer))
        if header is None:
            return None
        first, length, size = header
        if len(buffer) - pos < size + length or length > self._limit:
            return None
        payload = buffer[pos + size : pos + size + length]
        if buffer[pos + 1] & 0x80:
            payload = websocket.ABNF.mask(buffer[pos + size - 4 : pos + size], payload)
        return first & 0x0F, payload

    # -- websocket-client's side (the close frame; a frame it asks for otherwise) ---------------

    def _recv_blocking(self, bufsize: int) -> bytes:
        return bytes(self._sock.recv(bufsize))

    def _fill(self, needed: int) -> None:
        # Only reached if websocket-client asks for a frame that is not whole yet (the read loop
        # hands it only a close frame that is whole); the socket's timeout bounds the wait.
        self._join()
        while len(self._buffer) - self._pos < needed:
            data = self._sock.recv(_READ_SIZE)
            if not data:
                raise websocket.WebSocketConnectionClosedException("connection closed by the peer")
            self._buffer += data

    def recv_frame(self) -> Any:
        with self.lock:
            self._fill(2)
            header = _header(self._buffer, self._pos, len(self._buffer))
            while header is None:
                self._fill(len(self._buffer) - self._pos + 1)
                header = _header(self._buffer, self._pos, len(self._buffer))
            first, length, size = header
            if length > self._limit:
                raise MessageTooBigError(length, self._limit)
            self._fill(size + length)
            buffer, pos = self._buffer, self._pos
            masked = buffer[pos + 1] & 0x80
            payload = buffer[pos + size : pos + size + length]
            if masked:
                payload = websocket.ABNF.mask(buffer[pos + size - 4 : pos + size], payload)
            self._pos = pos + size + length
            self.close_next = False
            self.frames_parsed += 1
        frame = websocket.ABNF(
            first >> 7 & 1,
            first >> 6 & 1,
            first >> 5 & 1,
            first >> 4 & 1,
            first & 0x0F,
            1 if masked else 0,
            payload,
        )
        frame.validate(skip_utf8_validation=True)
        return frame


def _header(buffer: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """(first byte, payload length, header size) of the frame at ``pos``, or None if partial."""
    if end - pos < 2:
        return None
    second = buffer[pos + 1]
    length = second & 0x7F
    size = 2
    if length == 126:
        if end - pos < 4:
            return None
        length = int.from_bytes(buffer[pos + 2 : pos + 4], "big")
        size = 4
    elif length == 127:
        if end - pos < 10:
            return None
        length = int.from_bytes(buffer[pos + 2 : pos + 10], "big")
        size = 10
    if second & 0x80:
        size += 4
    return buffer[pos], length, size


class LimitedContinuation(_ContinuationBase):  # type: ignore[misc]
    """Reassembles fragments in a bytearray (linear, not quadratic) up to the size limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(fire_cont_frame=False, skip_utf8_validation=True)
        self._limit = limit

    cont_data: Any
    recving_frames: Any

    def add(self, frame: Any) -> None:
        if self.cont_data:
            if not isinstance(self.cont_data[1], bytearray):  # a second fragment: start joining
                self.cont_data[1] = bytearray(self.cont_data[1])
            self.cont_data[1] += frame.data
        else:
            if frame.opcode in (OPCODE_TEXT, OPCODE_BINARY):
                self.recving_frames = frame.opcode
            self.cont_data = [frame.opcode, frame.data]
        if len(self.cont_data[1]) > self._limit:
            raise MessageTooBigError(len(self.cont_data[1]), self._limit)
        if frame.fin:
            self.recving_frames = None

    def extract(self, frame: Any) -> tuple[int, Any]:
        # websocket-client hands a reassembled message on with the last fragment's opcode (CONT);
        # give it the message's own (TEXT/BINARY) so that it is not taken for binary.
        opcode, message = super().extract(frame)
        message.opcode = opcode
        if isinstance(message.data, bytearray):
            message.data = bytes(message.data)
        return opcode, message


def install_fast_reader(app: Any, sock: Any, leftover: bytes, limit: int) -> FastFrameBuffer | None:
    """Swap our frame reader and reassembler into ``app``'s freshly opened connection.

    Returns the reader, or None (with one warning) when this websocket-client does not let us.
    """
    if not FAST_READER_AVAILABLE:
        warn_fallback_once("its internals are not the ones wsmanager was tested with")
        return None
    ws = getattr(app, "sock", None)
    if ws is None or not hasattr(ws, "frame_buffer") or not hasattr(ws, "cont_frame"):
        warn_fallback_once("WebSocket.frame_buffer/cont_frame are missing")
        return None
    reader: FastFrameBuffer = FastFrameBuffer(sock, leftover, limit)
    ws.frame_buffer = reader
    ws.cont_frame = LimitedContinuation(limit)
    installed: object = getattr(ws, "frame_buffer", None)
    if installed is not reader:  # pragma: no cover - a read-only attribute
        warn_fallback_once("WebSocket.frame_buffer cannot be replaced")
        return None
    return reader


class App(websocket.WebSocketApp):  # type: ignore[misc]
    """``WebSocketApp`` whose ``run_forever`` runs the read loop made by ``loop_factory``."""

    def __init__(self, url: str, *, loop_factory: Callable[[App], Any], **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.loop_factory = loop_factory
        self.loop: Any = None

    def create_dispatcher(self, *args: Any, **kwargs: Any) -> Any:
        self.loop = self.loop_factory(self)
        return self.loop


def check_loop_installed(app: App) -> bool:
    """True when ``run_forever`` asked us for its dispatcher (so our read loop runs)."""
    return app.loop is not None
