"""The serving logic around SGLang's Engine, with a stand-in engine (the real one is exercised end
to end in tests/test_e2e_sglang.py): deltas from SGLang's cumulative text, usage, finish reasons,
request ids passed through, aborts when a stream is closed, SGLang's refusals as 400s; tool calls
read by SGLang's own parsers."""

from __future__ import annotations

import importlib.util
import json
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
    """Streams ``words`` as SGLang's cumulative outputs, then finishes with ``finish``."""

    def __init__(self, finish: dict[str, Any] | None = None, words: list[str] = WORDS) -> None:
        self.tokenizer_manager = Manager()
        self.calls: list[dict[str, Any]] = []
        self.finish = finish or {"type": "stop"}
        self.words = words

    async def async_generate(self, **kw: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(kw)
        return self._outputs(len(kw["input_ids"]))

    async def _outputs(self, prompt_tokens: int) -> AsyncIterator[dict[str, Any]]:
        for n in range(1, len(self.words) + 1):
            done = n == len(self.words)
            meta = {"prompt_tokens": prompt_tokens, "completion_tokens": n,
                    "finish_reason": self.finish if done else None}  # fmt: skip
            yield {"text": "".join(self.words[:n]), "meta_info": meta}


def model(engine: Engine, context: int = 64, tool_parser: str | None = None) -> SglangModel:
    return SglangModel(
        engine,
        context_length=context,
        abilities=("chat", "generate", "tools"),
        tool_parser=tool_parser,
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


# Tool calls through SGLang's own parsers (tools.py): they need sglang itself, as in .venv-sglang.
needs_sglang = pytest.mark.skipif(
    importlib.util.find_spec("sglang") is None,
    reason="SGLang's tool-call parsers are tested where SGLang is installed (.venv-sglang)",
)
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def run(text: str, parser: str | None, **kw: Any) -> tuple[Engine, list[dict[str, Any]]]:
    """The chat chunks for a request with a tool, the engine writing ``text`` a few characters at
    a time."""
    engine = Engine(words=[text[i : i + 3] for i in range(0, len(text), 3)])
    body = {"messages": [{"role": "user", "content": "weather?"}], "tools": [TOOL], **kw}
    return engine, anyio.run(collect, model(engine, 256, parser).chat(chat(**body)))


def merged(chunks: list[dict[str, Any]]) -> tuple[str, dict[int, dict[str, str]], str | None]:
    content, calls, finish = "", {}, None
    for chunk in chunks:
        choice = chunk["choices"][0]
        content += choice["delta"].get("content", "")
        for call in choice["delta"].get("tool_calls", ()):
            into = calls.setdefault(call["index"], {"name": "", "arguments": "", "id": ""})
            into["name"] += call["function"].get("name", "")
            into["arguments"] += call["function"]["arguments"]
            into["id"] += call.get("id", "")
        finish = choice["finish_reason"] or finish
    return content, calls, finish


@needs_sglang
def test_a_call_in_the_text_streams_as_tool_call_deltas() -> None:
    engine, chunks = run("Let me check. " + CALL, "hermes")
    content, calls, finish = merged(chunks)
    assert content.strip() == "Let me check."
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"].startswith("call_") and finish == "tool_calls"
    sampling = engine.calls[0]["sampling_params"]
    assert sampling["skip_special_tokens"] is False and "structural_tag" not in sampling


@needs_sglang
def test_text_without_a_call_stays_content() -> None:
    _, chunks = run("It is sunny <b>today</b>.", "hermes")
    assert merged(chunks) == ("It is sunny <b>today</b>.", {}, "stop")


@needs_sglang
def test_a_forced_call_is_held_by_sglangs_structural_tag_for_the_named_tool() -> None:
    other = {"type": "function", "function": {"name": "get_time"}}
    engine, chunks = run(
        CALL,
        "hermes",
        tools=[TOOL, other],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    tag = json.loads(engine.calls[0]["sampling_params"]["structural_tag"])
    assert tag["at_least_one"] is True and tag["triggers"] == ["<tool_call>"]
    assert [s["begin"] for s in tag["structures"]] == [
        '<tool_call>{"name":"get_weather", "arguments":'
    ]
    assert merged(chunks)[1][0]["name"] == "get_weather"


@needs_sglang
def test_parallel_tool_calls_false_keeps_the_first_call() -> None:
    second = CALL.replace("Paris", "Rome")
    _, chunks = run(CALL + "\n" + second, "hermes", parallel_tool_calls=False)
    calls = merged(chunks)[1]
    assert list(calls) == [0] and json.loads(calls[0]["arguments"]) == {"city": "Paris"}


@needs_sglang
def test_a_format_sglang_lacks_falls_back_to_modelyards_parser() -> None:
    # "llama3_json" is the catalog's name, not SGLang's: the core's parser reads the bare JSON call.
    engine, chunks = run('{"name": "get_weather", "arguments": {"city": "Oslo"}}', "llama3_json")
    calls = merged(chunks)[1]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}
    assert "skip_special_tokens" not in engine.calls[0]["sampling_params"]
