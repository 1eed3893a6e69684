"""The llama.cpp engine with the real SmolLM2-135M GGUF: chat, completion, usage, parallel slots,
cancellation, errors, embeddings and rerank. Small max_tokens and 1 thread keep it fast."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from modelyard.engine import Chunk
from modelyard.errors import ContextLengthExceeded, InvalidRequest, LaunchError, Unsupported
from modelyard.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSpec, RerankFamily

pytestmark = pytest.mark.anyio


def chat_request(content: str, **fields: Any) -> ChatCompletionRequest:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        **fields,
    }
    return msgspec.convert(body, ChatCompletionRequest)


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[Chunk]) -> str:
    return "".join(
        (c.get("delta", {}).get("content") or c.get("text") or "")
        for chunk in chunks
        for c in chunk["choices"]
    )


async def test_chat_streams_text_then_usage(chat_model: Any) -> None:
    chunks = await collect(
        chat_model.chat(chat_request("What is the capital of France?", max_tokens=8))
    )
    assert text_of(chunks).strip()
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] > 5
    assert 0 < usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert all("model" not in chunk for chunk in chunks)  # llama.cpp's GGUF path is not leaked
    finishes = [
        c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")
    ]
    assert finishes in (["length"], ["stop"])


async def test_usage_counts_the_generated_tokens(chat_model: Any) -> None:
    chunks = await collect(chat_model.chat(chat_request("Count from one to twenty.", max_tokens=6)))
    content_chunks = [
        c for chunk in chunks for c in chunk["choices"] if c.get("delta", {}).get("content")
    ]
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert len(content_chunks) <= 6


async def test_greedy_answers_repeat(chat_model: Any) -> None:
    first = text_of(await collect(chat_model.chat(chat_request("Name a fruit.", max_tokens=6))))
    second = text_of(await collect(chat_model.chat(chat_request("Name a fruit.", max_tokens=6))))
    assert first == second and first


async def test_completion(chat_model: Any) -> None:
    request = msgspec.convert(
        {"model": "m", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0},
        CompletionRequest,
    )
    chunks = await collect(chat_model.complete(request))
    assert text_of(chunks)
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_json_schema_response_format(chat_model: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 12}},
        "required": ["name"],
    }
    request = chat_request(
        "Give me a JSON object with a name.",
        max_tokens=40,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "person", "schema": schema},
        },
    )
    text = text_of(await collect(chat_model.chat(request)))
    assert isinstance(msgspec.json.decode(text)["name"], str)  # the grammar forces valid JSON


async def test_four_streams_share_the_parallel_slots(chat_model: Any) -> None:
    """With 4 slots, the 4 streams are generated together: every stream's first token arrives before
    any stream's last one (served one by one, stream 2 would start after stream 1 ended)."""
    arrivals: dict[int, list[float]] = {}

    async def one(index: int) -> None:
        times = arrivals.setdefault(index, [])
        async for chunk in chat_model.chat(
            chat_request(f"Tell me about the number {index}.", max_tokens=12)
        ):
            if any(c.get("delta", {}).get("content") for c in chunk["choices"]):
                times.append(time.monotonic())

    async with anyio.create_task_group() as tg:
        for index in range(4):
            tg.start_soon(one, index)
    assert all(len(times) >= 2 for times in arrivals.values())
    assert max(times[0] for times in arrivals.values()) < min(
        times[-1] for times in arrivals.values()
    )


async def test_over_long_prompt_names_the_numbers(chat_model: Any) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        await collect(chat_model.chat(chat_request("hello " * 700, max_tokens=4)))
    message = info.value.message
    assert (
        "each of the 4 parallel slots has 512 tokens of context (n_ctx=2048 / n_parallel=4)"
        in message
    )
    assert message.startswith("the request needs 7")  # ~700 tokens of prompt
    assert info.value.status == 400
    # The model is unharmed: the next request is served.
    assert text_of(await collect(chat_model.chat(chat_request("Hi", max_tokens=3))))


async def test_exception_path_becomes_invalid_request(chat_model: Any) -> None:
    """xllamacpp raises ValueError for a malformed body (the schemas normally prevent it)."""
    stream = chat_model._stream(
        chat_model._server.handle_chat_completions,
        {"messages": "not a list", "stream": True},
        n=1,
    )
    with pytest.raises(InvalidRequest, match="Expected 'messages' to be an array"):
        await collect(stream)


async def test_several_choices_sum_their_usage(chat_model: Any) -> None:
    chunks = await collect(chat_model.chat(chat_request("Hi", max_tokens=3, n=2)))
    assert {c["index"] for chunk in chunks for c in chunk["choices"]} == {0, 1}
    assert [chunk for chunk in chunks if "usage" in chunk] == [chunks[-1]]  # one usage chunk, last
    assert chunks[-1]["usage"]["completion_tokens"] == 6


async def test_more_choices_than_slots_is_a_clear_400(chat_model: Any) -> None:
    with pytest.raises(InvalidRequest, match="'n'"):
        await collect(chat_model.chat(chat_request("Hi", max_tokens=2, n=5)))


async def test_embed_needs_embedding_at_launch(chat_model: Any) -> None:
    with pytest.raises(Unsupported, match="launch it with embedding=true"):
        await chat_model.embed(EmbeddingRequest(model="m", input="hi"))


class CountingServer:
    """Wraps the real server to watch the stream callback: what it returned, and when it ended."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.returned: list[bool] = []
        self.closed = threading.Event()
        self.after_close = 0
        self.finished = threading.Event()

    def handle_chat_completions(self, body: dict[str, Any], callback: Callable[[Any], bool]) -> Any:
        def watched(chunk: Any) -> bool:
            if self.closed.is_set():
                self.after_close += 1
            answer = callback(chunk)
            self.returned.append(answer)
            return answer

        try:
            return self.server.handle_chat_completions(body, watched)
        finally:
            self.finished.set()


async def test_closing_a_stream_stops_generation(loader: Callable[..., Any]) -> None:
    model = loader(n_ctx=512, n_parallel=1)
    counting = CountingServer(model._server)
    model._server = counting
    try:
        stream = model.chat(chat_request("Write a long story about a dragon.", max_tokens=200))
        seen = 0
        async for _chunk in stream:
            seen += 1
            if seen == 3:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        counting.closed.set()
        await anyio.to_thread.run_sync(counting.finished.wait)
        # llama.cpp was told to stop at the next token: at most one or two callbacks after the
        # close, the last one answered True, and far fewer than 200 tokens were produced.
        assert counting.returned[-1] is True
        assert counting.after_close <= 2
        assert len(counting.returned) < 10
        # The only slot is free again: a following request is served to its end.
        chunks = await collect(model.chat(chat_request("Hi", max_tokens=3)))
        assert chunks[-1]["usage"]["completion_tokens"] == 3
    finally:
        await model.close()


async def test_cancelled_task_stops_generation(loader: Callable[..., Any]) -> None:
    model = loader(n_ctx=512, n_parallel=1)
    counting = CountingServer(model._server)
    model._server = counting
    got_one = anyio.Event()

    async def consume() -> None:
        async for _ in model.chat(
            chat_request("Write a long story about a castle.", max_tokens=200)
        ):
            got_one.set()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await got_one.wait()
            tg.cancel_scope.cancel()  # a client disconnect cancels the request's task
        counting.closed.set()
        await anyio.to_thread.run_sync(counting.finished.wait)
        assert counting.returned[-1] is True
        assert len(counting.returned) < 10
    finally:
        await model.close()


async def test_embeddings_when_launched_with_embedding(loader: Callable[..., Any]) -> None:
    model = loader(n_ctx=512, n_parallel=2, embedding=True)
    try:
        assert "embed" in model.abilities and "chat" in model.abilities
        result = await model.embed(
            EmbeddingRequest(model="m", input=["a red apple", "the stock market"])
        )
        first, second = (item["embedding"] for item in result["data"])
        assert [item["index"] for item in result["data"]] == [0, 1]
        assert len(first) == len(second) == 576
        assert first != second
        assert result["usage"]["prompt_tokens"] > 0
        with pytest.raises(Unsupported, match="dimensions"):
            await model.embed(EmbeddingRequest(model="m", input="x", dimensions=8))
    finally:
        await model.close()


async def test_embedding_family_cannot_chat(loader: Callable[..., Any], spec: ModelSpec) -> None:
    embedder = EmbeddingFamily(
        model_name="smollm2-embed", model_specs=(spec,), dimensions=576, max_tokens=256
    )
    model = loader(embedder, n_parallel=1)
    try:
        assert model.abilities == ("embed",)
        with pytest.raises(Unsupported, match="cannot chat"):
            model.chat(chat_request("Hi"))
        result = await model.embed(EmbeddingRequest(model="m", input="hello"))
        assert len(result["data"][0]["embedding"]) == 576
    finally:
        await model.close()


async def test_rerank_plumbing(loader: Callable[..., Any], spec: ModelSpec) -> None:
    """SmolLM2 is no reranker (its scores mean nothing), but llama.cpp runs rank pooling on it, which
    exercises the path: one score per document, in request order, with token usage."""
    reranker = RerankFamily(model_name="smollm2-rank", model_specs=(spec,), max_tokens=256)
    model = loader(reranker, n_parallel=1)
    try:
        assert model.abilities == ("rerank",)
        request = msgspec.convert(
            {"model": "m", "query": "cats", "documents": ["dogs", {"text": "cats purr"}, "bonds"]},
            RerankRequest,
        )
        result = await model.rerank(request)
        assert [r["index"] for r in result["results"]] == [0, 1, 2]
        assert all(isinstance(r["relevance_score"], float) for r in result["results"])
        assert result["usage"]["input_tokens"] > 0
    finally:
        await model.close()


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"n_ctx": 0}, InvalidRequest, "n_ctx must be a positive whole number"),
        ({"n_ctx": -1}, InvalidRequest, "n_ctx must be a positive whole number"),
        ({"n_ctx": 8, "n_parallel": 16}, InvalidRequest, "n_parallel=16 is larger than n_ctx=8"),
        ({"n_parallel": 0}, InvalidRequest, "n_parallel must be a positive whole number"),
        ({"sampling.top_kk": 5}, InvalidRequest, "did you mean 'sampling.top_k'"),
        ({"sampling": {"top_kk": 5}}, InvalidRequest, "did you mean 'sampling.top_k'"),
    ],
)
def test_bad_launch_params(
    loader: Callable[..., Any], params: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        loader(**params)


def test_not_a_gguf_is_refused_before_llama_cpp(
    tmp_path: Path, family: LLMFamily, xllamacpp_installed: None
) -> None:
    import modelyard_llamacpp as plugin

    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(LaunchError, match="is not a GGUF file"):
        plugin.load_model(
            engine="llama.cpp", family=family, spec=None, quantization="Q4_1", params={}, path=fake
        )


def test_truncated_gguf_is_refused_before_llama_cpp(
    gguf_path: Path, tmp_path: Path, family: LLMFamily, xllamacpp_installed: None
) -> None:
    import modelyard_llamacpp as plugin

    cut = tmp_path / "cut.gguf"
    with gguf_path.open("rb") as source:
        cut.write_bytes(source.read(40_000_000))
    with pytest.raises(LaunchError, match="is truncated"):
        plugin.load_model(
            engine="llama.cpp", family=family, spec=None, quantization="Q4_1", params={}, path=cut
        )


def test_launch_reports_per_slot_context(loader: Callable[..., Any]) -> None:
    model = loader(n_ctx=1000, n_parallel=3)
    try:
        assert model.context_length == 512  # what llama.cpp really gives each slot
    finally:
        anyio.run(model.close)
