"""Tool calls through the tokenizer's own parser (a stand-in tokenizer with mlx-lm's interface:
has_tool_calling, tool_call_start/end, tool_parser), streamed by the core's toolcalls."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from modelyard.schemas import ChatCompletionRequest, ChatMessage, FunctionDef, Tool
from modelyard_mlx import tools


class Tokenizer:
    has_tool_calling = True
    tool_call_start = "[CALL]"
    tool_call_end = "[/CALL]"

    @staticmethod
    def tool_parser(text: str, tools: Any) -> dict[str, Any]:
        assert tools and tools[0]["function"]["name"] == "get_weather"
        return json.loads(text)


def request() -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m",
        messages=[ChatMessage(role="user", content="Weather in Paris?")],
        tools=[Tool(type="function", function=FunctionDef(name="get_weather"))],
    )


async def run(pieces: list[str], plan: Any) -> list[dict[str, Any]]:
    async def chunks() -> Any:
        for i, piece in enumerate(pieces):
            finish = "stop" if i == len(pieces) - 1 else None
            yield {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": finish}]}

    return [c async for c in tools.toolcalls.with_tool_calls(chunks(), plan)]


def test_the_tokenizers_parser_turns_marked_text_into_tool_calls() -> None:
    plan = tools.plan(request(), Tokenizer(), "hermes")
    assert plan is not None and plan.format.marker == "[CALL]"
    call = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
    out = asyncio.run(run(["Let me check. [CA", "LL]", call, "[/CALL]"], plan))
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in out)
    calls = [t for c in out for t in c["choices"][0]["delta"].get("tool_calls", [])]
    assert content.strip() == "Let me check."
    assert [(t["function"]["name"], json.loads(t["function"]["arguments"])) for t in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert out[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_text_that_is_no_call_stays_content() -> None:
    plan = tools.plan(request(), Tokenizer(), None)
    out = asyncio.run(run(["[CALL]not json[/CALL]"], plan))
    assert out[-1]["choices"][0]["delta"]["content"] == "[CALL]not json[/CALL]"
    assert out[-1]["choices"][0]["finish_reason"] == "stop"


def test_without_a_tokenizer_parser_the_familys_format_is_used() -> None:
    class Plain:
        has_tool_calling = False

    plan = tools.plan(request(), Plain(), "hermes")
    assert plan is not None and plan.format.marker == "<tool_call>"
