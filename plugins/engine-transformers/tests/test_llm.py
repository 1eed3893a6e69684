"""Chat and completion on SmolLM2-135M-Instruct (real weights, converted from the packaged GGUF)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from modelyard.errors import ContextLengthExceeded, InvalidRequest, Unsupported
from modelyard.schemas import ChatCompletionRequest, ChatMessage, CompletionRequest, ResponseFormat

QUESTION = "What is the capital of France?"


def chat_request(content: str = QUESTION, **kw: Any) -> ChatCompletionRequest:
    kw.setdefault("temperature", 0)
    kw.setdefault("max_tokens", 12)
    return ChatCompletionRequest(
        model="smol", messages=[ChatMessage(role="user", content=content)], **kw
    )


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def chat_text(chunks: list[dict[str, Any]], index: int = 0) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content", "")
        for c in chunks
        if c["choices"][0]["index"] == index
    )


def test_chat_uses_the_models_template_and_answers(smollm2: Any) -> None:
    chunks = asyncio.run(collect(smollm2.chat(chat_request())))
    assert "Paris" in chat_text(chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    # Prompt tokens are the template's rendering, system prompt included (SmolLM2 adds one).
    rendered = smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": QUESTION}], add_generation_prompt=True, tokenize=False
    )
    assert "You are a helpful AI assistant named SmolLM" in rendered
    usage = chunks[-1]["usage"]
    assert usage["prompt_tokens"] == len(
        smollm2.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    )
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_stream_comes_token_by_token_with_exact_usage(smollm2: Any) -> None:
    chunks = asyncio.run(collect(smollm2.chat(chat_request(max_tokens=10, ignore_eos=True))))
    text_chunks = [c for c in chunks if c["choices"][0]["delta"].get("content")]
    assert len(text_chunks) >= 5  # many deltas, not one block at the end
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"]["completion_tokens"] == 10
    assert all("usage" not in c for c in chunks[:-1])


def test_stop_string_ends_the_answer_before_it(smollm2: Any) -> None:
    plain = chat_text(asyncio.run(collect(smollm2.chat(chat_request()))))
    assert "Paris" in plain
    chunks = asyncio.run(collect(smollm2.chat(chat_request(stop=["Paris"]))))
    assert chat_text(chunks) == plain[: plain.index("Paris")]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_seeded_sampling_is_reproducible(smollm2: Any) -> None:
    def run() -> str:
        request = chat_request(
            "Tell me a story.", temperature=1.0, top_p=0.9, top_k=40, seed=7, max_tokens=12
        )
        return chat_text(asyncio.run(collect(smollm2.chat(request))))

    assert run() == run()


def decode_batches(smollm2: Any) -> Counter[int]:
    return Counter(smollm2.scheduler.stats.decode)


def test_four_concurrent_streams_run_in_shared_batches(smollm2: Any) -> None:
    before = decode_batches(smollm2)
    questions = [QUESTION, "Say hello.", "Name a colour.", "What is 2+2?"]

    async def main() -> list[list[dict[str, Any]]]:
        return await asyncio.gather(
            *(
                collect(smollm2.chat(chat_request(q, max_tokens=16, ignore_eos=True)))
                for q in questions
            )
        )

    results = asyncio.run(main())
    steps = decode_batches(smollm2) - before
    assert steps[4] > 0, f"no decode step ran all four streams together: {dict(steps)}"
    assert [r[-1]["usage"]["completion_tokens"] for r in results] == [16] * 4


def test_batched_and_joined_streams_match_solo_greedy_runs(smollm2: Any) -> None:
    first, second = (
        chat_request(QUESTION, max_tokens=14),
        chat_request("Name three fruits.", max_tokens=14),
    )
    solo = [chat_text(asyncio.run(collect(smollm2.chat(r)))) for r in (first, second)]

    async def staggered() -> list[str]:
        stream = smollm2.chat(first)
        chunks = [await anext(stream), await anext(stream), await anext(stream)]
        # The second request joins a batch that is already decoding (continuous batching).
        late = asyncio.ensure_future(collect(smollm2.chat(second)))
        chunks += await collect(stream)
        return [chat_text(chunks), chat_text(await late)]

    assert smollm2.scheduler.can_merge
    assert asyncio.run(staggered()) == solo


def test_cancelled_stream_stops_its_sequence(smollm2: Any) -> None:
    async def main() -> int:
        stream = smollm2.chat(chat_request("Write a long essay.", max_tokens=400, ignore_eos=True))
        await anext(stream)
        await anext(stream)
        await stream.aclose()
        for _ in range(1000):  # the loop drops the row at its next step
            if smollm2.scheduler.active() == 0:
                break
            await asyncio.sleep(0.01)
        return smollm2.scheduler.active()

    before = sum(decode_batches(smollm2).values())
    assert asyncio.run(main()) == 0
    assert sum(decode_batches(smollm2).values()) - before < 400


def test_context_and_unsupported_requests_are_refused(smollm2: Any) -> None:
    with pytest.raises(ContextLengthExceeded, match="context of 2048"):
        asyncio.run(collect(smollm2.chat(chat_request(max_tokens=2040))))
    with pytest.raises(Unsupported, match="response_format"):
        asyncio.run(
            collect(smollm2.chat(chat_request(response_format=ResponseFormat(type="json_object"))))
        )
    with pytest.raises(InvalidRequest, match="token ids"):
        asyncio.run(collect(smollm2.complete(CompletionRequest(model="smol", prompt=[10**9]))))


def test_completion_with_echo_and_several_prompts(smollm2: Any) -> None:
    request = CompletionRequest(
        model="smol",
        prompt=["The capital of France is", "One, two, three,"],
        max_tokens=4,
        temperature=0,
        echo=True,
    )
    chunks = asyncio.run(collect(smollm2.complete(request)))
    texts = {0: "", 1: ""}
    for chunk in chunks:
        texts[chunk["choices"][0]["index"]] += chunk["choices"][0]["text"]
    assert texts[0].startswith("The capital of France is") and len(texts[0]) > len(
        "The capital of France is"
    )
    assert texts[1].startswith("One, two, three,")
    assert chunks[-1]["usage"]["completion_tokens"] == 8


def test_unknown_launch_parameter_names_the_close_match() -> None:
    from modelyard_transformers.params import LLMParams, parse_params

    with pytest.raises(InvalidRequest, match="max_num_seqs"):
        parse_params({"max_num_seq": 4}, LLMParams)


WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_tools_render_into_the_prompt_and_a_forced_call_is_refused(smollm2: Any) -> None:
    """tool_choice auto: the tools reach the template and the answer still streams; a forced
    call needs guided decoding, which this engine lacks: a 400 naming the engines that have it."""
    import msgspec

    plain = asyncio.run(collect(smollm2.chat(chat_request(max_tokens=4))))
    with_tools = msgspec.convert(
        {**msgspec.to_builtins(chat_request(max_tokens=4)), "tools": [WEATHER_TOOL]},
        ChatCompletionRequest,
    )
    chunks = asyncio.run(collect(smollm2.chat(with_tools)))
    assert chunks[-1]["usage"]["prompt_tokens"] > plain[-1]["usage"]["prompt_tokens"] + 20
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")
    forced = msgspec.convert(
        {**msgspec.to_builtins(with_tools), "tool_choice": "required"}, ChatCompletionRequest
    )
    with pytest.raises(Unsupported, match=r"llama\.cpp or vLLM"):
        asyncio.run(collect(smollm2.chat(forced)))
