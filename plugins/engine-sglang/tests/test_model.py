"""The serving logic around SGLang's Engine, with a stand-in engine (the real one is exercised end
to end in tests/test_e2e_sglang.py): deltas from SGLang's cumulative text, usage, finish reasons,
request ids passed through, aborts when a stream is closed, SGLang's refusals as 400s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest
from modelyard.errors import ContextLengthExceeded, EngineError, InvalidRequest
from modelyard.schemas import ChatCompletionRequest, CompletionRequest
from modelyard_sglang.model import SglangModel

WORDS = ["The", " capital", " is", " Paris", "."]


class Tokenizer:
    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [1] * len(text.split()) + ([0] if add_special_tokens else [])}

    def apply_chat_template(self, conversation: list[dict[str, Any]], **kw: Any) -> str:
        return " ".join(m["content"] for m in conversation) + " assistant:"


class Manager:
    def __init__(self) -> None:
        self.tokenizer = Tokenizer()
        self.aborted: list[str] = []

    def abort_request(self, rid: str) -> None:
        self.aborted.append(rid)


class Engine:
    def __init__(self, finish: dict[str, Any] | None = None) -> None:
        self.tokenizer_manager = Manager()
        self.calls: list[dict[str, Any]] = []
        self.finish = finish or {"type": "stop"}

    async def async_generate(self, **kw: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(kw)
        return self._outputs(len(kw["input_ids"]))

    async def _outputs(self, prompt_tokens: int) -> AsyncIterator[dict[str, Any]]:
        for n in range(1, len(WORDS) + 1):
            done = n == len(WORDS)
            meta = {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                    "finish_reason": self.finish if done else None}  # fmt: skip
            yield {"text": "".join(WORDS[:n]), "meta_info": meta}


def model(engine: Engine, context: int = 64) -> SglangModel:
    return SglangModel(
        engine, context_length=context, abilities=("chat", "generate"), tool_parser=None
    )


def chat(**kw: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "capital of France?"}], **kw}
    return msgspec.convert(body, ChatCompletionRequest)


async def collect(stream: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in stream]


def test_chat_streams_deltas_with_usage_and_the_request_id() -> None:
    engine = Engine()
    chunks = anyio.run(collect, model(engine).chat(chat(request_id="req-1", max_tokens=8)))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == "The capital is Paris."
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    prompt = len(engine.calls[0]["input_ids"])
    assert chunks[-1]["usage"] == {"prompt_tokens": prompt, "completion_tokens": 5,
                                   "total_tokens": prompt + 5}  # fmt: skip
    assert engine.calls[0]["rid"] == "req-1"
    assert engine.calls[0]["sampling_params"]["max_new_tokens"] == 8
    assert engine.tokenizer_manager.aborted == []  # finished: nothing to abort


def test_closing_a_stream_early_aborts_the_request_in_sglang() -> None:
    engine = Engine()

    async def leave() -> None:
        stream = model(engine).chat(chat(request_id="gone"))
        await stream.__anext__()
        await stream.aclose()

    anyio.run(leave)
    assert engine.tokenizer_manager.aborted == ["gone"]


def test_completion_text_and_json_schema_reach_sglang() -> None:
    engine = Engine({"type": "length", "length": 5})
    chunks = anyio.run(collect, model(engine).complete(CompletionRequest(model="m", prompt="The")))
    assert "".join(c["choices"][0]["text"] for c in chunks) == "The capital is Paris."
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    fmt = {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}}
    anyio.run(collect, model(engine).chat(chat(response_format=fmt)))
    assert engine.calls[-1]["sampling_params"]["json_schema"] == '{"type": "object"}'


def test_a_prompt_beyond_the_context_is_refused_before_sglang() -> None:
    engine = Engine()
    long = chat(messages=[{"role": "user", "content": "word " * 100}])
    with pytest.raises(ContextLengthExceeded, match="context"):
        anyio.run(collect, model(engine).chat(long))
    with pytest.raises(ContextLengthExceeded, match="max_tokens"):
        anyio.run(collect, model(engine).chat(chat(max_tokens=64)))
    assert engine.calls == []


def test_sglangs_own_aborts_become_errors_of_the_right_kind() -> None:
    refused = Engine({"type": "abort", "message": "bad grammar", "status_code": 400})
    with pytest.raises(InvalidRequest, match="bad grammar"):
        anyio.run(collect, model(refused).chat(chat()))
    failed = Engine({"type": "abort", "message": "scheduler died", "status_code": 500})
    with pytest.raises(EngineError, match="scheduler died"):
        anyio.run(collect, model(failed).chat(chat()))
    assert refused.tokenizer_manager.aborted == [] and failed.tokenizer_manager.aborted == []
