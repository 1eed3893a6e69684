"""Anthropic Messages API: the translation both ways, the routes, and the official SDK against
a fake engine (the real engine is in tests/test_e2e_apis.py)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import msgspec
import pytest
import server_support as S
from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import FunctionDef, Tool
from modelyard.server.anthropic_convert import EventWriter, to_chat
from modelyard.server.anthropic_schemas import MESSAGES, Message, StreamEvent

pytestmark = pytest.mark.anyio


def request(**body: Any) -> Any:
    base = {"model": "m", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}
    return MESSAGES.decode(json.dumps({**base, **body}))


def plain(chat: Any) -> list[dict[str, Any]]:
    return msgspec.to_builtins(chat.messages)


def tool_chunks() -> list[dict[str, Any]]:
    """A tool call streamed OpenAI-style: id and name first, the arguments in two pieces."""
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather"}}
    return [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Let me look."}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}}]},
        {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}]},
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
        },
    ]  # fmt: skip


# -- request translation --


def test_system_sampling_and_stops_carry_over() -> None:
    chat = to_chat(
        request(
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            stop_sequences=["\n\n"],
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stream=True,
        )
    )
    assert plain(chat)[0] == {"role": "system", "content": "Be brief.\nBe kind."}
    assert (chat.max_tokens, chat.stop, chat.temperature, chat.top_p, chat.top_k, chat.stream) == (
        32, ["\n\n"], 0.5, 0.9, 40, True,
    )  # fmt: skip


def test_tool_use_and_tool_result_become_openai_tool_calls_and_tool_messages() -> None:
    chat = to_chat(
        request(
            messages=[
                {"role": "user", "content": "Weather in Paris?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Thanks"},
                        {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}]},
                        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
                    ],
                },
            ],
            tools=[{"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}}],
            tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        )
    )  # fmt: skip
    assert plain(chat)[1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
            ],
        },
        # Tool results come first: OpenAI wants them right after the assistant's calls.
        {"role": "tool", "content": "18C", "tool_call_id": "toolu_1"},
        {"role": "tool", "content": "Error: boom", "tool_call_id": "toolu_2"},
        {"role": "user", "content": "Thanks"},
    ]  # fmt: skip
    assert chat.tools == [Tool(FunctionDef("weather", "Weather now", {"type": "object"}))]
    assert chat.tool_choice == {"type": "function", "function": {"name": "weather"}}
    assert chat.parallel_tool_calls is False


def test_output_config_format_becomes_a_json_schema_response_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    chat = to_chat(request(output_config={"format": {"type": "json_schema", "schema": schema}}))
    assert chat.response_format is not None and chat.response_format.type == "json_schema"
    assert chat.response_format.json_schema is not None
    assert chat.response_format.json_schema.schema == schema


@pytest.mark.parametrize(
    ("given", "expected"), [("auto", "auto"), ("any", "required"), ("none", "none")]
)
def test_tool_choice_kinds(given: str, expected: str) -> None:
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    chat = to_chat(request(tools=tools, tool_choice={"type": given}))
    assert chat.tool_choice == expected and chat.parallel_tool_calls is None


def test_images_become_image_parts() -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    chat = to_chat(
        request(messages=[{"role": "user", "content": [image, {"type": "text", "text": "what?"}]}])
    )
    assert plain(chat)[0]["content"] == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "auto"}},
        {"type": "text", "text": "what?"},
    ]  # fmt: skip


def test_refusals_name_the_path() -> None:
    with pytest.raises(Unsupported) as caught:
        to_chat(
            request(
                tools=[{"type": "web_search_20250305", "name": "web_search", "input_schema": {}}]
            )
        )
    assert caught.value.param == "tools[0].type"
    misplaced = [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "x"}]}]
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request(messages=misplaced))
    assert caught.value.param == "messages[0].content[0]"


# -- response translation --


def test_text_answer_as_one_message() -> None:
    writer = EventWriter("m", ["END"])
    for chunk in S.chat_chunks(["Hello", " there"]):
        writer.feed(chunk)
    message = writer.message()
    msgspec.convert(message, Message)  # the documented shape
    assert message["content"] == [{"type": "text", "text": "Hello there"}]
    assert message["stop_reason"] == "end_turn" and message["stop_sequence"] is None
    assert message["usage"] == {"input_tokens": 5, "output_tokens": 2}
    assert message["id"].startswith("msg_")


def test_finish_reasons_map_to_stop_reasons() -> None:
    cut = EventWriter("m")
    cut.feed({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "length"}]})
    assert cut.message()["stop_reason"] == "max_tokens"
    matched = EventWriter("m", ["END"])  # vLLM names the stop string it matched
    matched.feed(
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "END"}]}
    )
    assert (matched.message()["stop_reason"], matched.message()["stop_sequence"]) == (
        "stop_sequence",
        "END",
    )


def test_tool_call_chunks_become_a_tool_use_block() -> None:
    writer = EventWriter("m")
    for chunk in tool_chunks():
        writer.feed(chunk)
    message = writer.message()
    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}},
    ]
    assert message["stop_reason"] == "tool_use"


def test_tool_arguments_that_are_not_json_come_back_as_text() -> None:
    writer = EventWriter("m")
    call = {"index": 0, "id": "c", "function": {"name": "f", "arguments": "{not json"}}
    writer.feed(
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": "tool_calls"}]}
    )
    message = writer.message()
    assert message["content"] == [{"type": "text", "text": "{not json"}]
    assert message["stop_reason"] == "end_turn"


def test_stream_event_sequence_for_text_then_tool() -> None:
    writer = EventWriter("m")
    events = writer.start()
    for chunk in tool_chunks():
        events += writer.feed(chunk)
    events += writer.finish()
    names = [name for name, _ in events]
    assert names == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop",
    ]  # fmt: skip
    for _, data in events:
        msgspec.convert(data, StreamEvent)
    assert events[5][1]["content_block"] == {
        "type": "tool_use",
        "id": "call_1",
        "name": "weather",
        "input": {},
    }
    assert [e[1]["delta"]["partial_json"] for e in events[6:8]] == ['{"city": ', '"Paris"}']
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"input_tokens": 20, "output_tokens": 9}


# -- routes --


@pytest.fixture
async def client() -> Any:
    app, manager = S.app_with()
    manager.add("m")
    async with S.asgi_client(app) as http:
        http.manager = manager
        yield http


@pytest.mark.parametrize("path", ["/v1/messages", "/anthropic/v1/messages"])
async def test_messages_route(client: Any, path: str) -> None:
    response = await client.post(path, json={"model": "m", "max_tokens": 8, "system": "Be brief.", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert response.status_code == 200
    assert response.json()["content"] == [{"type": "text", "text": "Hello there!"}]
    sent = client.manager.requests[-1]
    assert sent.max_tokens == 8 and sent.messages[0].role == "system"


async def test_errors_in_anthropic_shape(client: Any) -> None:
    missing = await client.post("/v1/messages", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert missing.status_code == 400
    body = missing.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    unknown = await client.post("/v1/messages", json={"model": "nope", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    hot = await client.post("/v1/messages", json={"model": "m", "max_tokens": 4, "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert hot.status_code == 400 and "temperature" in hot.json()["error"]["message"]


async def test_a_tool_schema_that_is_not_an_object_is_a_400_naming_the_tool(client: Any) -> None:
    tools = [{"name": "f", "input_schema": {"type": "string"}}]
    response = await client.post("/v1/messages", json={"model": "m", "max_tokens": 4, "tools": tools, "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "JSON schema of an object" in response.json()["error"]["message"]


async def test_count_tokens_runs_one_token(client: Any) -> None:
    response = await client.post("/v1/messages/count_tokens", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    assert response.json() == {"input_tokens": 5}
    assert client.manager.requests[-1].max_tokens == 1


# -- the official SDK against a real HTTP server (fake engine) --


@pytest.fixture(scope="module")
def sdk() -> Any:
    app, manager = S.app_with()
    manager.add("m")
    with (
        S.running_server(app) as url,
        anthropic.Anthropic(base_url=url, api_key="anything", max_retries=0) as client,
    ):
        yield client


def test_sdk_create_stream_count_and_errors(sdk: anthropic.Anthropic) -> None:
    hello = [{"role": "user", "content": "hi"}]
    message = sdk.messages.create(model="m", max_tokens=8, messages=hello)  # type: ignore[arg-type]
    assert message.content[0].text == "Hello there!" and message.stop_reason == "end_turn"  # type: ignore[union-attr]
    with sdk.messages.stream(model="m", max_tokens=8, messages=hello) as stream:  # type: ignore[arg-type]
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Hello", " there", "!"]
    assert final.usage.input_tokens == 5 and final.usage.output_tokens == 3
    assert sdk.messages.count_tokens(model="m", messages=hello).input_tokens == 5  # type: ignore[arg-type]
    with pytest.raises(anthropic.NotFoundError):
        sdk.messages.create(model="nope", max_tokens=8, messages=hello)  # type: ignore[arg-type]
