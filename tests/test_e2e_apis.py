"""modelyard serve → llama.cpp → SmolLM2-135M-Instruct, through the Anthropic Messages API (the
official ``anthropic`` SDK), the OpenAI Responses API (the official ``openai`` SDK), and the
generated API description. The 135M model rarely calls a tool by itself, so tool calls are forced
(Anthropic's tool_choice "any", Responses' "required": llama.cpp's grammar holds the output to a
call); every shape of the translation is in core/tests/test_routes_anthropic.py and
test_routes_responses.py."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anthropic
import httpx
import openai
import pytest
from modelyard.server.app import ROUTES
from openapi_spec_validator import validate

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]

# The 135M model needs a system prompt to answer this bare question sensibly.
SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
# anthropic 2.x no longer takes temperature/top_p/top_k as arguments (newer Claude models ignore
# them); older SDKs and agents still send them, and local models need them: sent as extra body.
GREEDY = {"temperature": 0}
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


@pytest.fixture(scope="module")
def smollm2(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = server.launch(model_uid="smollm2-apis", n_ctx=2048, n_parallel=1, **smollm2_gguf)
    yield uid
    server.terminate(uid)


@pytest.fixture(scope="module")
def claude(server: Server) -> Iterator[anthropic.Anthropic]:
    # The Anthropic SDK takes the server root; it appends /v1/messages itself.
    with anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0) as client:
        yield client


# -- Anthropic Messages --


def test_anthropic_create_answers_with_usage(claude: anthropic.Anthropic, smollm2: str) -> None:
    message = claude.messages.create(
        model=smollm2,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=16,
        extra_body=GREEDY,
    )
    assert message.type == "message" and message.role == "assistant" and message.model == smollm2
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "Paris" in text
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 5 and 0 < message.usage.output_tokens <= 16
    counted = claude.messages.count_tokens(
        model=smollm2, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}]
    )
    assert counted.input_tokens == message.usage.input_tokens


def test_anthropic_multi_turn_and_max_tokens(claude: anthropic.Anthropic, smollm2: str) -> None:
    message = claude.messages.create(
        model=smollm2,
        system=[{"type": "text", "text": SYSTEM}],
        messages=[
            {"role": "user", "content": QUESTION},
            {"role": "assistant", "content": [{"type": "text", "text": "Paris."}]},
            {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]},
        ],
        max_tokens=2,
        extra_body=GREEDY,
    )
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 2
    assert message.content and message.content[0].type == "text"


def test_anthropic_stop_sequences(claude: anthropic.Anthropic, smollm2: str) -> None:
    message = claude.messages.create(
        model=smollm2,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=16,
        extra_body=GREEDY,
        stop_sequences=["Paris"],
    )
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "Paris" not in text
    assert message.usage.output_tokens < 16


def test_anthropic_stream(claude: anthropic.Anthropic, smollm2: str) -> None:
    with claude.messages.stream(
        model=smollm2,
        system=SYSTEM,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=16,
        extra_body={"temperature": 0, "top_k": 1, "top_p": 0.9},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds and "content_block_stop" in kinds
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]  # type: ignore[union-attr]
    assert len(deltas) > 1
    assert "Paris" in "".join(deltas) == final.content[0].text  # type: ignore[union-attr]
    # The end-of-turn token counts as output but streams no text.
    assert final.usage.input_tokens > 5 and len(deltas) <= final.usage.output_tokens <= 16


def test_anthropic_errors(claude: anthropic.Anthropic, smollm2: str) -> None:
    body = {"model": smollm2, "messages": [{"role": "user", "content": "hi"}]}  # no max_tokens
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post("/v1/messages", body=body, cast_to=httpx.Response)
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert "max_tokens" in caught.value.body["error"]["message"]  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="no-such-model", max_tokens=4, messages=body["messages"])  # type: ignore[arg-type]


def test_anthropic_tool_use_round_trip(claude: anthropic.Anthropic, smollm2: str) -> None:
    tools: Any = [
        {
            "name": "get_weather",
            "description": "Current weather in a city",
            "input_schema": WEATHER_SCHEMA,
        }
    ]
    ask: Any = {"role": "user", "content": "What is the weather in Paris?"}
    message = claude.messages.create(
        model=smollm2, system=SYSTEM, messages=[ask], tools=tools, tool_choice={"type": "any"},
        max_tokens=64, extra_body=GREEDY,
    )  # fmt: skip
    assert message.stop_reason == "tool_use"
    [call] = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_weather" and isinstance(call.input["city"], str)  # type: ignore[index]
    with claude.messages.stream(
        model=smollm2, system=SYSTEM, messages=[ask], tools=tools, tool_choice={"type": "any"},
        max_tokens=64, extra_body=GREEDY,
    ) as stream:  # fmt: skip
        kinds = [event.type for event in stream]
        streamed = stream.get_final_message()
    assert "input_json" in kinds  # the SDK's own event for input_json_delta
    assert [b.input for b in streamed.content if b.type == "tool_use"] == [call.input]
    answer = claude.messages.create(
        model=smollm2, system=SYSTEM, tools=tools, max_tokens=24, extra_body=GREEDY,
        messages=[
            ask,
            {"role": "assistant", "content": message.content},  # type: ignore[typeddict-item]
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny, 24 C"}]},
        ],
    )  # fmt: skip
    assert answer.stop_reason in ("end_turn", "max_tokens", "tool_use")
    assert answer.content


# -- OpenAI Responses --


def test_responses_string_input(oai: openai.OpenAI, smollm2: str) -> None:
    response = oai.responses.create(
        model=smollm2, instructions=SYSTEM, input=QUESTION, max_output_tokens=16, temperature=0
    )
    assert response.status in ("completed", "incomplete") and response.model == smollm2
    assert "Paris" in response.output_text
    assert response.usage is not None and response.usage.input_tokens > 5


def test_responses_items_input_and_incomplete(oai: openai.OpenAI, smollm2: str) -> None:
    response = oai.responses.create(
        model=smollm2,
        instructions=SYSTEM,
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": QUESTION}]},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ],
        max_output_tokens=2,
        temperature=0,
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text


def test_responses_stream(oai: openai.OpenAI, smollm2: str) -> None:
    events = list(
        oai.responses.create(
            model=smollm2,
            instructions=SYSTEM,
            input=QUESTION,
            max_output_tokens=16,
            temperature=0,
            stream=True,
        )
    )
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert kinds[-1] in ("response.completed", "response.incomplete")
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
    assert "Paris" in text == events[-1].response.output_text  # type: ignore[union-attr]


def test_responses_previous_response_id(oai: openai.OpenAI, smollm2: str) -> None:
    first = oai.responses.create(
        model=smollm2, instructions=SYSTEM, input=QUESTION, max_output_tokens=8, temperature=0
    )
    second = oai.responses.create(
        model=smollm2,
        instructions=SYSTEM,
        input="Say it again.",
        previous_response_id=first.id,
        max_output_tokens=8,
        temperature=0,
    )
    assert second.previous_response_id == first.id
    # The second prompt holds the first question and answer: more tokens than both of them.
    assert first.usage is not None and second.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert oai.responses.retrieve(first.id).output_text == first.output_text
    with pytest.raises(openai.NotFoundError) as caught:
        oai.responses.create(model=smollm2, input="hi", previous_response_id="resp_forgotten")
    assert "resp_forgotten" in str(caught.value)


def test_responses_function_call_round_trip(oai: openai.OpenAI, smollm2: str) -> None:
    tool: Any = {"type": "function", "name": "get_weather", "description": "Current weather in a city", "parameters": WEATHER_SCHEMA}  # fmt: skip
    first = oai.responses.create(
        model=smollm2, instructions=SYSTEM, input="What is the weather in Paris?", tools=[tool],
        tool_choice="required", max_output_tokens=64, temperature=0,
    )  # fmt: skip
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and isinstance(json.loads(call.arguments)["city"], str)
    answer = oai.responses.create(
        model=smollm2, instructions=SYSTEM, previous_response_id=first.id, tools=[tool],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}],
        max_output_tokens=24, temperature=0,
    )  # fmt: skip
    assert answer.status in ("completed", "incomplete") and answer.output


def test_responses_json_schema_format(oai: openai.OpenAI, smollm2: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = oai.responses.create(
        model=smollm2, instructions=SYSTEM, input=QUESTION, max_output_tokens=32, temperature=0,
        text={"format": {"type": "json_schema", "name": "capital", "schema": schema, "strict": True}},
    )  # fmt: skip
    assert response.status == "completed", response.output_text
    assert isinstance(json.loads(response.output_text)["city"], str)
    assert response.text is not None and response.text.format.type == "json_schema"  # type: ignore[union-attr]


def test_anthropic_output_format(claude: anthropic.Anthropic, smollm2: str) -> None:
    message = claude.messages.create(
        model=smollm2, system=SYSTEM, messages=[{"role": "user", "content": QUESTION}],
        max_tokens=32, extra_body=GREEDY,
        output_config={"format": {"type": "json_schema", "schema": WEATHER_SCHEMA}},
    )  # fmt: skip
    assert message.stop_reason == "end_turn"
    assert isinstance(json.loads(message.content[0].text)["city"], str)  # type: ignore[union-attr]


# -- API description --


def test_openapi_and_docs(server: Server) -> None:
    with server.client() as http:
        spec: dict[str, Any] = http.get("/openapi.json").json()
        page = http.get("/docs")
    validate(spec)
    for route in ROUTES:
        for method in route.methods - {"HEAD"}:
            assert method.lower() in spec["paths"][route.path], (method, route.path)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(link.startswith("/docs/assets/") for link in links)
