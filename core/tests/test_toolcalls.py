"""Tool calls for text-only engines: forcing a call by schema, and parsing calls out of streamed text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard import toolcalls
from modelyard.errors import InvalidRequest
from modelyard.schemas import ChatCompletionRequest

pytestmark = pytest.mark.anyio

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


def chunks_of(texts: list[str], finish: str = "stop") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}
    ]
    out += [{"choices": [{"index": 0, "delta": {"content": t}}]} for t in texts]
    out.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    out.append({"choices": [], "usage": {"completion_tokens": len(texts)}})
    return out


async def _iterate(items: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    for item in items:
        yield item


async def run(plan: toolcalls.ToolPlan, texts: list[str], finish: str = "stop") -> dict[str, Any]:
    """Stream through with_tool_calls; return the content, the calls and the finish reason seen."""
    content, calls, reason = [], [], None
    async for chunk in toolcalls.with_tool_calls(_iterate(chunks_of(texts, finish)), plan):
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            content.append(delta.get("content") or "")
            calls += delta.get("tool_calls") or []
            reason = choice.get("finish_reason") or reason
    return {"content": "".join(content), "calls": calls, "finish": reason}


def test_no_tools_or_tool_choice_none_means_no_plan() -> None:
    assert toolcalls.plan(request(), "hermes") is None
    assert toolcalls.plan(request(tools=[WEATHER], tool_choice="none"), "hermes") is None


def test_auto_uses_the_family_format_and_hermes_by_default() -> None:
    assert toolcalls.plan(request(tools=[WEATHER]), "llama3").format.name == "llama3"
    assert toolcalls.plan(request(tools=[WEATHER]), "qwen").format.name == "hermes"
    plan = toolcalls.plan(request(tools=[WEATHER], tool_choice="auto"), None)
    assert plan is not None and plan.format.name == "hermes" and plan.forced_schema is None


def test_required_forces_a_call_to_any_tool() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER, TIME], tool_choice="required"), "hermes")
    assert plan is not None and plan.forced_schema is not None
    names = [s["properties"]["name"]["const"] for s in plan.forced_schema["anyOf"]]
    assert names == ["get_weather", "get_time"]
    assert plan.response_format()["type"] == "json_schema"


def test_a_named_function_forces_that_one() -> None:
    choice = {"type": "function", "function": {"name": "get_time"}}
    plan = toolcalls.plan(request(tools=[WEATHER, TIME], tool_choice=choice), None)
    assert plan is not None and plan.forced_schema is not None
    assert plan.forced_schema["properties"]["name"] == {"const": "get_time"}
    assert plan.forced_schema["properties"]["arguments"] == {"type": "object"}


def test_an_unknown_named_function_is_a_400_listing_the_tools() -> None:
    choice = {"type": "function", "function": {"name": "nope"}}
    with pytest.raises(InvalidRequest, match="get_weather") as caught:
        toolcalls.plan(request(tools=[WEATHER], tool_choice=choice), None)
    assert caught.value.param == "tool_choice"


def test_forcing_a_call_with_a_response_format_is_a_400() -> None:
    with pytest.raises(InvalidRequest, match="response_format"):
        toolcalls.plan(
            request(
                tools=[WEATHER], tool_choice="required", response_format={"type": "json_object"}
            ),
            None,
        )


async def test_hermes_call_split_across_chunks_becomes_a_tool_call() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER]), "hermes")
    assert plan is not None
    texts = [
        "Let me check.",
        "<tool",
        '_call>\n{"name": ',
        '"get_weather", "arguments": ',
        '{"city": "Paris"}}\n</tool_call>',
    ]
    seen = await run(plan, texts)
    assert seen["content"] == "Let me check."
    assert seen["finish"] == "tool_calls"
    [call] = seen["calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert call["id"].startswith("call_") and call["index"] == 0


async def test_two_hermes_calls_keep_their_order_unless_parallel_calls_are_off() -> None:
    text = '<tool_call>{"name": "get_time", "arguments": {}}</tool_call><tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'
    plan = toolcalls.plan(request(tools=[WEATHER, TIME]), "hermes")
    assert plan is not None
    seen = await run(plan, [text])
    assert [c["function"]["name"] for c in seen["calls"]] == ["get_time", "get_weather"]
    assert [c["index"] for c in seen["calls"]] == [0, 1]
    single = toolcalls.plan(request(tools=[WEATHER, TIME], parallel_tool_calls=False), "hermes")
    assert single is not None
    assert len((await run(single, [text]))["calls"]) == 1


async def test_invalid_json_in_a_call_stays_content_with_finish_stop() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER]), "hermes")
    assert plan is not None
    text = "<tool_call>{not json}</tool_call>"
    seen = await run(plan, [text[:7], text[7:]])
    assert seen == {"content": text, "calls": [], "finish": "stop"}


async def test_a_cut_off_call_is_content_with_finish_length() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER]), "hermes")
    assert plan is not None
    seen = await run(plan, ['<tool_call>{"name": "get_weather", "argu'], finish="length")
    assert seen["calls"] == [] and seen["finish"] == "length"
    assert seen["content"].startswith("<tool_call>")


async def test_llama3_json_call_and_plain_text() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER]), "llama3")
    assert plan is not None
    seen = await run(plan, [' {"name": "get_weather", ', '"parameters": {"city": "Oslo"}}'])
    assert seen["finish"] == "tool_calls" and seen["content"] == ""
    assert json.loads(seen["calls"][0]["function"]["arguments"]) == {"city": "Oslo"}
    plain = await run(plan, ["It is ", "sunny."])
    assert plain == {"content": "It is sunny.", "calls": [], "finish": "stop"}


async def test_a_forced_call_is_parsed_from_the_whole_output() -> None:
    plan = toolcalls.plan(request(tools=[WEATHER], tool_choice="required"), "hermes")
    assert plan is not None
    seen = await run(plan, ['{\n  "name": "get_weather",', ' "arguments": {"city": "Lima"}\n}'])
    assert seen["finish"] == "tool_calls" and seen["content"] == ""
    assert json.loads(seen["calls"][0]["function"]["arguments"]) == {"city": "Lima"}


@given(st.text(alphabet=st.characters(blacklist_characters="<"), max_size=60), st.integers(1, 8))
def test_text_without_a_marker_streams_unchanged(text: str, pieces: int) -> None:
    plan = toolcalls.plan(request(tools=[WEATHER]), "hermes")
    assert plan is not None
    size = max(1, len(text) // pieces)
    parts = [text[i : i + size] for i in range(0, len(text), size)]
    seen = anyio.run(run, plan, parts)
    assert seen == {"content": text, "calls": [], "finish": "stop"}
