"""Frames and framing between server and runner, over a real socket pair."""

from __future__ import annotations

import struct
import tempfile

import anyio
import msgspec
import pytest
from anyio.abc import SocketStream
from modelyard.errors import ModelyardError, Overloaded
from modelyard.runner import protocol as p
from modelyard.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)
from modelyard.specs import LLMFamily, ModelSource, ModelSpec

pytestmark = pytest.mark.anyio


async def _pair() -> tuple[SocketStream, SocketStream]:
    """Both ends of a real Unix socket connection, as the server and runner have them."""
    with tempfile.TemporaryDirectory() as tmp:
        async with await anyio.create_unix_listener(f"{tmp}/s") as listener:
            client = await anyio.connect_unix(f"{tmp}/s")
            server = await listener.accept()  # type: ignore[attr-defined]
    return server, client


def _family() -> LLMFamily:
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=0.135,
        quantizations=("Q4_1",),
        sources=(ModelSource(hub="local", model_id="/models/x.gguf"),),
    )
    return LLMFamily(
        model_name="tiny", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )


async def test_frames_round_trip_both_ways() -> None:
    left, right = await _pair()
    server = p.FrameStream(left, p.TO_SERVER)
    runner = p.FrameStream(right, p.TO_RUNNER)
    family = _family()
    load = p.LoadSpec(
        uid="tiny",
        engine="echo",
        family=family,
        spec=family.model_specs[0],
        quantization="Q4_1",
        params={"n_ctx": 512, "sampling.top_k": 3},
        path="/m",
    )
    await server.send(p.Load(load))
    got = await runner.receive()
    assert isinstance(got, p.Load)
    assert got.spec == load  # the family union and nested specs come back typed

    for frame in (
        p.Chunk(7, {"choices": [{"delta": {"content": "hi"}}]}),
        p.End(7),
        p.Error(8, Overloaded("busy").to_dict()),
        p.Ready(2048, ("chat",), 123),
    ):
        await runner.send(frame)
        assert await server.receive() == frame
    await left.aclose()
    await right.aclose()


async def test_call_request_is_redecoded_as_its_op_type() -> None:
    request = ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="hello")], top_k=5
    )
    call = msgspec.msgpack.decode(
        p.ENCODER.encode(p.make_call(1, "chat", request)), type=p.ToRunner
    )
    decoded = p.decode_request(call)
    assert isinstance(decoded, ChatCompletionRequest)
    assert decoded == request
    rerank = RerankRequest(model="r", query="q", documents=["a", "b"])
    call = msgspec.msgpack.decode(
        p.ENCODER.encode(p.make_call(2, "rerank", rerank)), type=p.ToRunner
    )
    assert p.decode_request(call) == rerank


async def test_error_dict_survives_the_wire_with_its_class() -> None:
    frame = msgspec.msgpack.decode(
        p.ENCODER.encode(p.Error(1, Overloaded("too many").to_dict())), type=p.ToServer
    )
    error = ModelyardError.from_dict(frame.error)
    assert isinstance(error, Overloaded)
    assert (error.status, error.retry_after) == (429, 1)


async def test_numpy_like_values_are_sent_as_lists() -> None:
    class Vector:
        def tolist(self) -> list[float]:
            return [0.5, 0.25]

    frame = msgspec.msgpack.decode(
        p.ENCODER.encode(p.Result(1, {"embedding": Vector()})), type=p.ToServer
    )
    assert frame.data == {"embedding": [0.5, 0.25]}


async def test_eof_between_and_inside_frames_is_end_of_stream() -> None:
    left, right = await _pair()
    conn = p.FrameStream(right, p.TO_SERVER)
    await left.send(struct.pack(">I", 100) + b"partial")
    await left.aclose()
    with pytest.raises(anyio.EndOfStream):
        await conn.receive()
    await right.aclose()


async def test_oversized_length_prefix_is_refused() -> None:
    left, right = await _pair()
    conn = p.FrameStream(right, p.TO_SERVER)
    await left.send(struct.pack(">I", p.MAX_FRAME + 1))
    with pytest.raises(msgspec.DecodeError, match="exceeds"):
        await conn.receive()
    await left.aclose()
    await right.aclose()


async def test_concurrent_senders_never_interleave_frames() -> None:
    left, right = await _pair()
    sender = p.FrameStream(left, p.TO_SERVER)
    receiver = p.FrameStream(right, p.TO_SERVER)
    big = "x" * 200_000  # larger than a socket buffer, so writes are split

    async def send_many(start: int) -> None:
        for i in range(start, start + 20):
            await sender.send(p.Chunk(i, {"text": big}))

    received: list[int] = []
    async with anyio.create_task_group() as tg:
        for start in (0, 100, 200):
            tg.start_soon(send_many, start)
        for _ in range(60):
            frame = await receiver.receive()
            assert frame.data["text"] == big
            received.append(frame.id)
    assert sorted(received) == sorted([*range(20), *range(100, 120), *range(200, 220)])
    await left.aclose()
    await right.aclose()


@pytest.mark.parametrize(
    "request_",
    [
        CompletionRequest(model="m", prompt="hi"),
        CompletionRequest(model="m", prompt=["a", "b"]),
        CompletionRequest(model="m", prompt=[1, 2, 3]),
        EmbeddingRequest(model="e", input=["x", "y"]),
        EmbeddingRequest(model="e", input=[[1, 2], [3]]),
    ],
)
async def test_list_union_requests_reach_the_runner_as_their_type(
    request_: CompletionRequest | EmbeddingRequest,
) -> None:
    op = "complete" if isinstance(request_, CompletionRequest) else "embed"
    call = msgspec.msgpack.decode(p.ENCODER.encode(p.make_call(3, op, request_)), type=p.ToRunner)
    decoded = p.decode_request(call)
    assert isinstance(decoded, type(request_))
    assert msgspec.to_builtins(decoded) == msgspec.to_builtins(request_)


async def _socket_frames(decoder: msgspec.msgpack.Decoder) -> tuple[SocketStream, p.SocketFrames]:  # type: ignore[type-arg]
    left, right = await _pair()
    frames = await p.open_frames(right, decoder)
    assert isinstance(frames, p.SocketFrames)  # a socket on asyncio takes the fast path
    return left, frames


def _wire(frame: p._Frame) -> bytes:
    payload = p.ENCODER.encode(frame)
    return struct.pack(">I", len(payload)) + payload


async def test_socket_frames_decode_frames_split_and_joined_across_reads() -> None:
    left, frames = await _socket_frames(p.TO_SERVER)
    data = b"".join(_wire(p.Chunk(i, {"text": "x" * i})) for i in range(1, 6))
    # Byte by byte for the first frame, then the rest in one write.
    cut = len(_wire(p.Chunk(1, {"text": "x"})))
    for i in range(cut):
        await left.send(data[i : i + 1])
    await left.send(data[cut:])
    received = [await frames.receive() for _ in range(5)]
    assert [f.id for f in received] == [1, 2, 3, 4, 5]
    assert received[4].data == {"text": "xxxxx"}
    await left.aclose()
    with pytest.raises(anyio.EndOfStream):
        await frames.receive()
    await frames.aclose()


async def test_socket_frames_eof_inside_a_frame_and_oversized_prefix() -> None:
    left, frames = await _socket_frames(p.TO_SERVER)
    await left.send(struct.pack(">I", 100) + b"partial")
    await left.aclose()
    with pytest.raises(anyio.EndOfStream):
        await frames.receive()
    left, frames = await _socket_frames(p.TO_SERVER)
    await left.send(struct.pack(">I", p.MAX_FRAME + 1))
    with pytest.raises(msgspec.DecodeError, match="exceeds"):
        await frames.receive()
    await left.aclose()


async def test_socket_frames_offer_frames_to_on_frame_and_queue_the_rest() -> None:
    left, frames = await _socket_frames(p.TO_SERVER)
    taken: list[int] = []

    def take_chunks(frame: object) -> bool:
        if isinstance(frame, p.Chunk):
            taken.append(frame.id)
            return True
        return False

    frames.on_frame = take_chunks
    await left.send(_wire(p.Chunk(1, {})) + _wire(p.Pong(7)) + _wire(p.Chunk(2, {})))
    pong = await frames.receive()
    assert isinstance(pong, p.Pong) and pong.seq == 7
    assert taken == [1, 2]
    await left.aclose()
    await frames.aclose()


async def test_socket_frames_sent_together_leave_in_order_in_one_write() -> None:
    left, right = await _pair()
    sender = await p.open_frames(left, p.TO_SERVER)
    receiver = await p.open_frames(right, p.TO_SERVER)
    big = "x" * 200_000  # more than a socket buffer: the sender waits for the reader

    async def send_many(start: int) -> None:
        for i in range(start, start + 20):
            await sender.send(p.Chunk(i, {"text": big}))

    got: list[int] = []
    async with anyio.create_task_group() as tg:
        for start in (0, 100):
            tg.start_soon(send_many, start)
        for _ in range(40):
            frame = await receiver.receive()
            assert frame.data["text"] == big
            got.append(frame.id)
    assert [i for i in got if i < 100] == list(range(20))
    assert sorted(got) == [*range(20), *range(100, 120)]
    await sender.aclose()
    with pytest.raises(anyio.EndOfStream):
        await receiver.receive()
    with pytest.raises(anyio.BrokenResourceError):
        await sender.send(p.Pong(1))
    await receiver.aclose()


async def test_lingering_frames_share_one_write_and_a_frame_that_cannot_wait_takes_them_along() -> (
    None
):
    left, right = await _pair()
    sender = await p.open_frames(left, p.TO_SERVER)
    receiver = await p.open_frames(right, p.TO_SERVER)
    assert isinstance(sender, p.SocketFrames) and isinstance(receiver, p.SocketFrames)
    reads: list[int] = []
    original = receiver.data_received

    def counting(data: bytes) -> None:
        reads.append(len(data))
        original(data)

    receiver.data_received = counting  # type: ignore[method-assign]
    # Chunks that may linger for a long time: sent over several loop passes, still one write.
    for i in range(3):
        await sender.send(p.Chunk(i, {"text": "t"}), linger=60)
        await anyio.sleep(0.01)
    assert reads == []  # still held
    await sender.send(p.End(9))  # no linger: everything buffered leaves now, in order
    got = [await receiver.receive() for _ in range(4)]
    assert [type(f).__name__ for f in got] == ["Chunk", "Chunk", "Chunk", "End"]
    assert [f.id for f in got] == [0, 1, 2, 9]
    assert len(reads) == 1
    # Alone, a lingering frame still leaves once its linger is over.
    await sender.send(p.Chunk(5, {"text": "t"}), linger=0.01)
    assert (await receiver.receive()).id == 5
    await sender.aclose()
    await receiver.aclose()


async def test_a_frame_buffered_too_long_leaves_before_the_loop_iteration_ends() -> None:
    import socket
    import time

    from anyio.abc import SocketAttribute

    peer, frames = await _socket_frames(p.TO_RUNNER)
    raw = peer.extra(SocketAttribute.raw_socket)

    def on_the_wire() -> bytes:
        try:
            return raw.recv(1 << 16, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return b""

    # None of this yields to the loop: one long iteration, as a burst of requests makes it.
    await frames.send(p.Ping(1))
    assert on_the_wire() == b""  # a fresh frame waits for the iteration's end (or company)
    time.sleep(p.FLUSH_AFTER * 2)
    await frames.send(p.Ping(2))
    assert on_the_wire() == _wire(p.Ping(1)) + _wire(p.Ping(2))
    await frames.send(p.Ping(3))
    assert on_the_wire() == b""
    await anyio.sleep(0.01)  # the iteration ends: the rest leaves
    assert on_the_wire() == _wire(p.Ping(3))
    await frames.aclose()
    await peer.aclose()
