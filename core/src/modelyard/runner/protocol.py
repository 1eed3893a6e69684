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

import functools
import struct
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import ByteStream
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

    async def send(self, frame: _Frame) -> None:
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
