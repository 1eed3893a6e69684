"""vLLM for real, in-process: SmolLM2-135M-Instruct (safetensors, float32, eager) on the CPU build.

One engine serves the whole module (it takes about a minute to start on two cores). Generations are
short and greedy, so the text is deterministic and the tests stay cheap.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from anyio.from_thread import BlockingPortal
from modelyard.errors import ContextLengthExceeded, InvalidRequest
from modelyard.schemas import ChatCompletionRequest, CompletionRequest
from modelyard.specs import LLMFamily, ModelSource, ModelSpec
from modelyard_vllm import load_model
from modelyard_vllm.model import VllmModel

pytestmark = [
    pytest.mark.slow,
    # torch and vLLM warn about their own deprecated internals while importing and starting.
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; run plugins/engine-vllm/scripts/test.sh (it builds .venv-vllm)",
    ),
]

QUESTION = "What is the capital of France?"


def family(path: Path) -> LLMFamily:
    spec = ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", str(path)),))
    return LLMFamily(
        model_name="smollm2-135m-instruct",
        model_specs=(spec,),
        model_ability=("chat", "generate", "tools"),
        context_length=8192,
        architectures=("LlamaForCausalLM",),
    )


def load(path: Path, params: dict[str, Any]) -> Any:
    fam = family(path)
    return load_model(
        engine="vLLM",
        family=fam,
        spec=fam.model_specs[0],
        quantization="none",
        params=params,
        path=path,
    )


@pytest.fixture(scope="module")
def model(portal: BlockingPortal, smollm2_path: Path) -> Iterator[VllmModel]:
    path = smollm2_path
    # As the runner does: load in a worker thread, serve on the loop.
    loaded = portal.call(
        anyio.to_thread.run_sync,
        lambda: load(path, {"max_model_len": 2048, "tool_call_parser": "hermes"}),
    )
    try:
        yield loaded
    finally:
        portal.call(loaded.close)


def chat_request(content: str = QUESTION, **kw: Any) -> ChatCompletionRequest:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 12,
        **kw,
    }
    return msgspec.convert(body, ChatCompletionRequest)


async def collect(stream: Any) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def text_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])


def test_chat_streams_deltas_and_ends_with_real_usage(
    portal: BlockingPortal, model: VllmModel
) -> None:
    chunks = portal.call(collect, model.chat(chat_request(stream=True)))
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = text_of(chunks)
    assert "Paris" in text
    usage = chunks[-1]["usage"]
    content_chunks = [c for chunk in chunks for c in chunk["choices"] if c["delta"].get("content")]
    assert (
        0 < usage["completion_tokens"] <= 12
        and usage["completion_tokens"] >= len(content_chunks) - 1
    )
    assert (
        usage["prompt_tokens"] > 5
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )
    finishes = [
        c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c["finish_reason"]
    ]
    assert finishes in (["stop"], ["length"])
    assert all(
        "id" not in chunk and "model" not in chunk for chunk in chunks
    )  # the core fills these


def test_non_streamed_chat_is_one_chunk_with_the_same_text(
    portal: BlockingPortal, model: VllmModel
) -> None:
    streamed = text_of(portal.call(collect, model.chat(chat_request(stream=True))))
    (chunk,) = portal.call(collect, model.chat(chat_request()))
    (choice,) = chunk["choices"]
    assert choice["delta"]["role"] == "assistant" and choice["delta"]["content"] == streamed
    assert choice["finish_reason"] in ("stop", "length")
    assert chunk["usage"]["completion_tokens"] > 0


def test_completion_streams_text(portal: BlockingPortal, model: VllmModel) -> None:
    request = msgspec.convert(
        {
            "model": "m",
            "prompt": "The capital of France is",
            "max_tokens": 6,
            "temperature": 0,
            "stream": True,
        },
        CompletionRequest,
    )
    chunks = portal.call(collect, model.complete(request))
    text = "".join(c["text"] for chunk in chunks for c in chunk["choices"])
    assert "Paris" in text
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    (whole,) = portal.call(collect, model.complete(msgspec.structs.replace(request, stream=False)))
    assert whole["choices"][0]["text"] == text


def test_eight_concurrent_requests_are_batched(portal: BlockingPortal, model: VllmModel) -> None:
    cities = ["France", "Germany", "Italy", "Spain", "Japan", "Egypt", "Canada", "Peru"]
    seen_in_flight: list[int] = []

    async def run_all() -> list[list[dict[str, Any]]]:
        results: dict[int, list[dict[str, Any]]] = {}

        async def one(i: int) -> None:
            results[i] = await collect(
                model.chat(chat_request(f"What is the capital of {cities[i]}?", stream=True))
            )

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(one, i)
            # While they run, count how many requests the engine holds at once.
            while len(results) < 8:
                seen_in_flight.append(model.engine.get_num_unfinished_requests())
                await anyio.sleep(0.05)
        return [results[i] for i in range(8)]

    results = portal.call(run_all)
    for chunks in results:
        assert chunks[-1]["usage"]["completion_tokens"] > 0 and text_of(chunks).strip()
    assert max(seen_in_flight) > 1, "requests were never in the engine together: no batching"
    texts = [text_of(chunks) for chunks in results]
    # Each stream carries its own request's answer (no crossed streams under batching).
    assert "Paris" in texts[0] and "Paris" not in texts[1] and len(set(texts)) > 4


def test_closing_a_stream_aborts_the_request_in_the_engine(
    portal: BlockingPortal, model: VllmModel
) -> None:
    async def start_then_leave() -> tuple[int, int]:
        stream = model.chat(chat_request(stream=True, max_tokens=1500, ignore_eos=True))
        await stream.__anext__()
        await stream.__anext__()
        during = model.engine.get_num_unfinished_requests()
        await stream.aclose()  # the client went away
        return during, model.engine.get_num_unfinished_requests()

    during, after = portal.call(start_then_leave)
    assert during == 1 and after == 0


def test_cancelling_the_consumer_aborts_the_request(
    portal: BlockingPortal, model: VllmModel
) -> None:
    async def cancel_midway() -> int:
        got: list[dict[str, Any]] = []
        with anyio.CancelScope() as scope:
            async for chunk in model.chat(
                chat_request(stream=True, max_tokens=1500, ignore_eos=True)
            ):
                got.append(chunk)
                if len(got) == 3:
                    scope.cancel()  # what the runner does on a Cancel frame
        assert len(got) == 3
        return model.engine.get_num_unfinished_requests()

    assert portal.call(cancel_midway) == 0


def test_max_tokens_beyond_the_context_is_a_400(portal: BlockingPortal, model: VllmModel) -> None:
    with pytest.raises(ContextLengthExceeded) as info:
        portal.call(collect, model.chat(chat_request(max_tokens=4096)))
    assert (
        info.value.status == 400
        and "2048" in info.value.message
        and info.value.param == "max_tokens"
    )


def test_a_prompt_longer_than_the_context_is_a_400(
    portal: BlockingPortal, model: VllmModel
) -> None:
    with pytest.raises(InvalidRequest) as info:
        portal.call(collect, model.chat(chat_request("word " * 3000)))
    assert info.value.status == 400 and "2048" in info.value.message


def test_response_format_json_schema_constrains_the_output(
    portal: BlockingPortal, model: VllmModel
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    request = chat_request(
        "Is Paris in France? Answer in JSON.",
        max_tokens=16,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )
    (chunk,) = portal.call(collect, model.chat(request))
    content = chunk["choices"][0]["delta"]["content"]
    assert json.loads(content)["answer"] in ("yes", "no")


@pytest.mark.parametrize(
    "tool_choice", [{"type": "function", "function": {"name": "get_weather"}}, "required"]
)
def test_a_forced_tool_choice_yields_a_tool_call(
    portal: BlockingPortal, model: VllmModel, tool_choice: Any
) -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            # strict: vLLM constrains the arguments to the schema only for strict tools.
            "strict": True,
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "enum": ["Paris", "Rome"]}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    # hermes wraps the call in <tool_call> tags: ~50 tokens, the one longer generation here.
    request = chat_request(
        "What is the weather in Paris?", max_tokens=64, tools=[tool], tool_choice=tool_choice
    )
    (chunk,) = portal.call(collect, model.chat(request))
    (call,) = chunk["choices"][0]["delta"]["tool_calls"]
    assert call["index"] == 0 and call["function"]["name"] == "get_weather" and call["id"]
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
