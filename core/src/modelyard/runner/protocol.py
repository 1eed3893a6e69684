"""The frames server and runner exchange, and length-prefixed framing over an anyio byte stream.

One connection carries many requests at once: every call has an ``id`` and its replies name it, so
a slow stream never holds up a fast one. Frames are msgspec tagged unions encoded as msgpack arrays;
a frame on the wire is a 4-byte big-endian length followed by that many bytes.

Launch phase (first frames): server sends ``Load``; runner answers ``Progress``* then ``Ready`` or
``LaunchFailed``. Serving phase: server sends ``Call``/``Cancel``/``Shutdown``; runner answers each
call with ``Chunk``* + ``End`` (streams), ``Result`` (embed, rerank) or ``Error``. At any time the
server may send ``Ping``; the runner answers ``Pong`` with the same number at once (the heartbeat
that tells a busy runner from a hung one).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
import struct
from collections.abc import Callable
from typing import Any, Literal, cast

import anyio
import msgspec
from anyio.abc import ByteStream, SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

from ..errors import InvalidRequest
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from ..specs import Family, ModelSpec

# Server and runner may run in different environments (engine environments): both sides check this
# at the handshake, and it changes whenever a frame below changes shape.
PROTOCOL_VERSION = 1

Op = Literal["chat", "complete", "embed", "rerank"]
STREAM_OPS: frozenset[str] = frozenset({"chat", "complete"})
# A generous cap so that a corrupt length prefix fails loudly instead of allocating gigabytes.
MAX_FRAME = 1 << 30
FLUSH_AFTER = 0.001  # seconds a buffered frame waits for the loop iteration to end, at most
_HEADER = struct.Struct(">I")


class LoadSpec(msgspec.Struct, kw_only=True):
    """What a runner loads: everything ``load_model`` needs, decided by the server beforehand."""

    uid: str
    engine: str
    family: Family
    spec: ModelSpec
    quantization: str
    params: dict[str, Any] = {}
    path: str
    # The server's PROTOCOL_VERSION: a runner from another environment checks it before loading.
    protocol: int = 0


class _Frame(msgspec.Struct, array_like=True, tag_field="t"):
    pass


# --- server -> runner ---
class Load(_Frame, tag="load"):
    spec: LoadSpec


class Call(_Frame, tag="call"):
    id: int
    op: Op
    # The schemas.py request, encoded on its own so the runner decodes it into the op's own type.
    request: msgspec.Raw


class Cancel(_Frame, tag="cancel"):
    id: int


class Shutdown(_Frame, tag="shutdown"):
    pass


class Ping(_Frame, tag="ping"):
    seq: int


# --- runner -> server ---
class Progress(_Frame, tag="progress"):
    stage: str
    progress: float


class Ready(_Frame, tag="ready"):
    context_length: int
    abilities: tuple[str, ...]
    pid: int


class LaunchFailed(_Frame, tag="launch_failed"):
    error: dict[str, Any]


class Chunk(_Frame, tag="chunk"):
    id: int
    data: dict[str, Any]


class Result(_Frame, tag="result"):
    id: int
    data: dict[str, Any]


class End(_Frame, tag="end"):
    id: int


class Pong(_Frame, tag="pong"):
    seq: int


class Error(_Frame, tag="error"):
    id: int
    error: dict[str, Any]


ToRunner = Load | Call | Cancel | Shutdown | Ping
ToServer = Progress | Ready | LaunchFailed | Chunk | Result | End | Error | Pong

REQUEST_TYPES: dict[str, type[msgspec.Struct]] = {
    "chat": ChatCompletionRequest,
    "complete": CompletionRequest,
    "embed": EmbeddingRequest,
    "rerank": RerankRequest,
}


def _enc_hook(obj: Any) -> Any:
    # Engines hand back numpy arrays and scalars (embeddings, scores): send them as plain lists/numbers.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise NotImplementedError(f"cannot send a {type(obj).__name__} between server and runner")


ENCODER = msgspec.msgpack.Encoder(enc_hook=_enc_hook)
TO_RUNNER = msgspec.msgpack.Decoder(ToRunner)
TO_SERVER = msgspec.msgpack.Decoder(ToServer)


@functools.cache
def _request_decoder(op: str) -> msgspec.msgpack.Decoder[Any]:
    return msgspec.msgpack.Decoder(REQUEST_TYPES[op])


def make_call(call_id: int, op: Op, request: msgspec.Struct) -> Call:
    try:
        return Call(call_id, op, msgspec.Raw(ENCODER.encode(request)))
    except OverflowError:  # the edge bounds every integer; this is the last line of defence
        raise InvalidRequest(
            "the request holds an integer that does not fit in 64 bits; send smaller numbers"
        ) from None


def decode_request(call: Call) -> msgspec.Struct:
    return _request_decoder(call.op).decode(call.request)


class FrameStream:
    """Frames over one byte stream. Sends are serialised by a lock (many tasks write replies);
    receiving is done by one reader task."""

    def __init__(self, stream: ByteStream, decoder: msgspec.msgpack.Decoder[Any]) -> None:
        self.stream = stream
        self._reader = BufferedByteReceiveStream(stream)
        self._decoder = decoder
        self._lock = anyio.Lock()

    async def send(self, frame: _Frame, linger: float = 0.0) -> None:
        """``linger`` is SocketFrames' (every frame is written at once here)."""
        payload = ENCODER.encode(frame)
        async with self._lock:
            await self.stream.send(_HEADER.pack(len(payload)) + payload)

    async def receive(self) -> Any:
        """The next frame; ``anyio.EndOfStream`` when the peer closed the connection."""
        try:
            (size,) = _HEADER.unpack(await self._reader.receive_exactly(_HEADER.size))
            if size > MAX_FRAME:
                raise msgspec.DecodeError(
                    f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit"
                )
            payload = await self._reader.receive_exactly(size)
        except anyio.IncompleteRead:
            raise anyio.EndOfStream from None
        return self._decoder.decode(payload)

    async def aclose(self) -> None:
        await self.stream.aclose()


async def open_frames(
    stream: ByteStream, decoder: msgspec.msgpack.Decoder[Any]
) -> FrameStream | SocketFrames:
    """Frames over ``stream``: on asyncio a socket is taken over by ``SocketFrames`` (the hot
    path of every streamed token), anything else gets the portable ``FrameStream``."""
    try:
        raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
        loop = asyncio.get_running_loop()
    except (anyio.TypedAttributeLookupError, RuntimeError):
        return FrameStream(stream, decoder)
    sock = socket.socket(raw.family, raw.type, fileno=raw.detach())  # anyio's object lets go
    frames = SocketFrames(decoder)
    await loop.connect_accepted_socket(lambda: frames, sock)
    return frames


class SocketFrames(asyncio.Protocol):
    """``FrameStream``'s interface on an asyncio protocol: the socket stays registered with the
    loop, frames are decoded as bytes arrive, and a frame already received is returned without a
    trip through the loop. anyio's socket streams cost a checkpoint, a failed ``recv`` and two
    ``epoll_ctl`` calls per read, which was most of the server's CPU per streamed token.

    Sends are buffered and written once per loop iteration: frames produced together (one token
    of each of eight streams) leave in one write. Their order is kept, so frames never interleave.
    A buffer older than ``FLUSH_AFTER`` is written at the next send even within an iteration: an
    iteration can run dozens of request handlers (a burst of 64 embeddings took 10-20 ms), and
    the runner, seeing nothing meanwhile, took the burst as over and batched only its first few."""

    def __init__(self, decoder: msgspec.msgpack.Decoder[Any]) -> None:
        self._decoder = decoder
        self._transport: asyncio.Transport | None = None
        self._pieces: list[bytes] = []  # the start of a frame not complete yet
        self._pending = 0  # bytes in _pieces
        self._needed = 0  # bytes _pieces must reach to hold the next frame
        self._frames: collections.deque[Any] = collections.deque()  # frames, or errors to raise
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._closed = False
        self._outgoing: list[bytes] = []
        self._lingering: asyncio.TimerHandle | None = None  # a delayed flush (see ``send``)
        self._buffered_at = 0.0  # loop time of the oldest frame in _outgoing
        self._writable: asyncio.Future[None] | None = None
        # When set, every good frame is offered here as it is decoded, outside any task: the
        # server's reader routes replies to their calls without waking a task. A frame it does
        # not take (returns False) waits for ``receive`` as usual.
        self.on_frame: Callable[[Any], bool] | None = None

    # --- asyncio.Protocol callbacks ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._pieces:  # a frame in parts: join only once it is complete
            self._pieces.append(data)
            self._pending += len(data)
            if self._pending < self._needed:
                return
            data, self._pieces = b"".join(self._pieces), []
        view, start, size = memoryview(data), 0, len(data)
        needed = _HEADER.size
        while size - start >= _HEADER.size:
            (length,) = _HEADER.unpack_from(data, start)
            if length > MAX_FRAME:
                self._fail(
                    msgspec.DecodeError(
                        f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit"
                    )
                )
                return
            end = start + _HEADER.size + length
            if size < end:
                needed = end - start
                break
            try:
                frame = self._decoder.decode(view[start + _HEADER.size : end])
                if self.on_frame is None or not self.on_frame(frame):
                    self._frames.append(frame)
            except Exception as exc:  # a bad frame, or a bug in on_frame: receive raises it
                self._frames.append(exc)
            start = end
        if start < size:
            self._pieces, self._pending, self._needed = [data[start:]], size - start, needed
        self._wake()

    def _fail(self, error: Exception) -> None:
        self._frames.append(error)
        self._eof = True
        self._pieces = []
        assert self._transport is not None
        self._transport.abort()
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._closed = True
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- FrameStream's interface ---
    async def receive(self) -> Any:
        """The next frame; ``anyio.EndOfStream`` when the peer closed the connection."""
        while not self._frames:
            if self._eof:
                raise anyio.EndOfStream
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._frames.popleft()
        if isinstance(item, Exception):
            raise item
        return item

    async def send(self, frame: _Frame, linger: float = 0.0) -> None:
        """Buffer ``frame``; the buffer is written once per loop pass, or, when every frame in it
        came with a ``linger``, up to that many seconds later (frames sent meanwhile join it)."""
        if self._closed or self._transport is None or self._transport.is_closing():
            raise anyio.BrokenResourceError("the connection is closed")
        payload = ENCODER.encode(frame)
        loop = asyncio.get_running_loop()
        fresh = not self._outgoing
        if fresh:
            self._buffered_at = loop.time()
            if linger > 0:
                self._lingering = loop.call_later(linger, self._flush)
            else:
                loop.call_soon(self._flush)
        elif linger <= 0 and self._lingering is not None:  # this one must not wait
            self._lingering.cancel()
            self._lingering = None
            loop.call_soon(self._flush)
        self._outgoing += (_HEADER.pack(len(payload)), payload)
        if not fresh and self._lingering is None and loop.time() - self._buffered_at >= FLUSH_AFTER:
            self._flush()  # the scheduled flush then finds nothing, or only later frames
        writable = self._writable
        if writable is not None:  # the peer reads slower than we write: wait for it
            await writable
            if self._closed:
                raise anyio.BrokenResourceError("the connection is closed")

    def _flush(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None
        if not self._outgoing:
            return
        data, self._outgoing = b"".join(self._outgoing), []
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def aclose(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if self._outgoing:
                self._flush()
            self._transport.close()  # after what is buffered was written
