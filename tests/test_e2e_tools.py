"""Tool calling through modelyard serve → llama.cpp → SmolLM2-135M-Instruct, with the openai client.

The 135M model rarely decides to call a tool by itself, so the calls here are forced (tool_choice
"required" or a named function: llama.cpp's grammar holds the output to a call); "auto" is checked
for what it must never do (fail, or lose the answer), and the tool-result round trip for an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]

SYSTEM = {"role": "system", "content": "You are a helpful assistant with tools."}
ASK = {"role": "user", "content": "What is the weather in Paris?"}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME: Any = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current time in a timezone",
        "parameters": {
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    },
}


@pytest.fixture(scope="module")
def smollm2(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = server.launch(model_uid="smollm2-tools", n_ctx=2048, n_parallel=2, **smollm2_gguf)
    yield uid
    server.terminate(uid)


def test_required_tool_choice_returns_a_parsed_call(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.chat.completions.create(
        model=smollm2,
        messages=[SYSTEM, ASK],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=64,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_a_named_function_is_the_one_called(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.chat.completions.create(
        model=smollm2,
        messages=[SYSTEM, ASK],
        tools=[WEATHER, TIME],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
        max_tokens=64,
        temperature=0,
    )
    [call] = reply.choices[0].message.tool_calls
    assert call.function.name == "get_time"
    assert "timezone" in json.loads(call.function.arguments)


def test_a_forced_call_streams_as_tool_call_deltas(oai: openai.OpenAI, smollm2: str) -> None:
    stream = oai.chat.completions.create(
        model=smollm2,
        messages=[SYSTEM, ASK],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=64,
        temperature=0,
        stream=True,
    )
    chunks = [c for c in stream if c.choices]
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert deltas and deltas[0].id and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert "city" in json.loads(arguments)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert not "".join(c.choices[0].delta.content or "" for c in chunks).strip()


def test_the_tool_result_round_trip_answers_in_text(oai: openai.OpenAI, smollm2: str) -> None:
    first = oai.chat.completions.create(
        model=smollm2,
        messages=[SYSTEM, ASK],
        tools=[WEATHER],
        tool_choice="required",
        max_tokens=64,
        temperature=0,
    )
    call = first.choices[0].message.tool_calls[0]
    reply = oai.chat.completions.create(
        model=smollm2,
        messages=[
            SYSTEM,
            ASK,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny and 21 degrees Celsius."},
        ],
        tools=[WEATHER],
        max_tokens=48,
        temperature=0,
    )
    choice = reply.choices[0]
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in ("stop", "length", "tool_calls")


def test_auto_never_fails_and_keeps_the_text(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.chat.completions.create(
        model=smollm2, messages=[SYSTEM, ASK], tools=[WEATHER], max_tokens=32, temperature=0
    )
    choice = reply.choices[0]
    if choice.message.tool_calls:  # the model chose to call: then it is a well-formed call
        assert choice.finish_reason == "tool_calls"
        assert choice.message.tool_calls[0].function.name == "get_weather"
    else:
        assert choice.message.content and choice.finish_reason in ("stop", "length")


def test_an_unknown_named_function_is_a_400(oai: openai.OpenAI, smollm2: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=smollm2,
            messages=[SYSTEM, ASK],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_stock_price"}},
            max_tokens=8,
        )
    assert "get_stock_price" in str(caught.value) and "get_weather" in str(caught.value)


def test_tool_parameters_that_are_not_an_object_schema_are_a_400(
    oai: openai.OpenAI, smollm2: str
) -> None:
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=smollm2, messages=[SYSTEM, ASK], tools=[bad], max_tokens=8
        )
    assert "tools[0].function" in str(caught.value)


def test_langchain_bind_tools_and_structured_output(server: Server, smollm2: str) -> None:
    """langchain-openai, unmodified: bind_tools with a forced call, and
    with_structured_output(method="function_calling"), which forces its schema's function."""
    langchain_openai = pytest.importorskip("langchain_openai")
    pydantic = pytest.importorskip("pydantic")

    class Weather(pydantic.BaseModel):
        """Get the current weather in a city."""

        city: str

    chat = langchain_openai.ChatOpenAI(
        model=smollm2,
        base_url=f"{server.url}/v1",
        api_key="unused",
        temperature=0,
        max_tokens=64,
        max_retries=0,
    )
    messages = [("system", SYSTEM["content"]), ("human", ASK["content"])]
    called = chat.bind_tools([Weather], tool_choice="required").invoke(messages)
    assert called.tool_calls and called.tool_calls[0]["name"] == "Weather"
    assert isinstance(called.tool_calls[0]["args"]["city"], str)

    structured = chat.with_structured_output(Weather, method="function_calling").invoke(messages)
    assert isinstance(structured, Weather) and structured.city
