"""Folding streamed chunks into one chat.completion / text_completion response."""

from __future__ import annotations

from typing import Any

import pytest
import server_support as S
from modelyard.server.aggregate import Folder

pytestmark = pytest.mark.anyio


def fold(kind: str, chunks: list[dict[str, Any]]) -> dict[str, Any]:
    folder = Folder(kind)
    for chunk in chunks:
        folder.add(chunk)
    return folder.result(id="chatcmpl-1", created=7, model="m")


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"choices": [{"index": index, "delta": fields, "finish_reason": finish}]}


def test_text_reasoning_and_usage_are_folded() -> None:
    usage = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
    result = fold(
        "chat",
        [
            delta(role="assistant", content=""),
            delta(reasoning_content="think"),
            delta(reasoning_content="ing"),
            delta(content="Hel"),
            delta(content="lo"),
            {**delta(finish="length"), "usage": usage, "system_fingerprint": "fp1"},
        ],
    )
    assert result["object"] == "chat.completion"
    assert (result["id"], result["created"], result["model"]) == ("chatcmpl-1", 7, "m")
    (choice,) = result["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": "Hello",
        "reasoning_content": "thinking",
    }
    assert choice["finish_reason"] == "length"
    assert result["usage"] == usage
    assert result["system_fingerprint"] == "fp1"


def test_tool_call_deltas_are_merged_by_index() -> None:
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "get_time", "arguments": '{"tz"'},
    }
    result = fold(
        "chat",
        [
            delta(role="assistant"),
            delta(tool_calls=[first]),
            delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
            delta(tool_calls=[second, {"index": 0, "function": {"arguments": '"Paris"}'}}]),
            delta(tool_calls=[{"index": 1, "function": {"arguments": ': "UTC"}'}}]),
            delta(finish="tool_calls"),
        ],
    )
    message = result["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'},
        },
    ]
    assert result["choices"][0]["finish_reason"] == "tool_calls"


def test_a_tool_call_without_id_gets_one() -> None:
    result = fold(
        "chat", [delta(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{}"}}])]
    )
    assert result["choices"][0]["message"]["tool_calls"][0]["id"].startswith("call_")


def test_choices_are_kept_apart_and_ordered() -> None:
    result = fold(
        "chat",
        [
            delta(1, content="b"),
            delta(0, content="a"),
            delta(1, content="B", finish="stop"),
            delta(0, finish="stop"),
        ],
    )
    assert [c["message"]["content"] for c in result["choices"]] == ["a", "bB"]
    assert [c["index"] for c in result["choices"]] == [0, 1]


def test_completion_text_and_logprobs_are_concatenated() -> None:
    chunks = [
        {
            "choices": [
                {
                    "index": 0,
                    "text": "Par",
                    "logprobs": {"tokens": ["Par"], "token_logprobs": [-0.1]},
                }
            ]
        },
        {
            "choices": [
                {
                    "index": 0,
                    "text": "is",
                    "logprobs": {"tokens": ["is"], "token_logprobs": [-0.2]},
                    "finish_reason": "stop",
                }
            ]
        },
    ]
    result = fold("text", chunks)
    assert result["object"] == "text_completion"
    assert result["choices"] == [
        {
            "index": 0,
            "text": "Paris",
            "logprobs": {"tokens": ["Par", "is"], "token_logprobs": [-0.1, -0.2]},
            "finish_reason": "stop",
        }
    ]


def test_an_empty_answer_still_has_a_string_content() -> None:
    result = fold("chat", [delta(role="assistant"), delta(finish="stop")])
    assert result["choices"][0]["message"]["content"] == ""


async def test_non_streamed_chat_through_the_route_folds_tool_calls() -> None:
    app, manager = S.app_with()
    manager.add("m")
    call = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": '},
    }
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    chunks = [
        delta(role="assistant"),
        delta(tool_calls=[call]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '"x"}'}}]),
        {**delta(finish="tool_calls"), "usage": usage},
    ]
    manager.next_stream["m"] = lambda: S.FakeStream(chunks)
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    async with S.asgi_client(app) as http:
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools},
        )
    body = response.json()
    assert response.status_code == 200
    assert (
        body["object"] == "chat.completion"
        and body["id"].startswith("chatcmpl-")
        and body["model"] == "m"
    )
    assert body["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"q": "x"}',
    }
    assert body["usage"] == usage
    assert manager.requests[0].tools[0].function.name == "lookup"
    assert manager.streams[0].closed.is_set()
