"""OpenAI Responses API: the translation both ways, the store, the routes, and the official SDK
against a fake engine (the real engine is in tests/test_e2e_apis.py)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import openai
import pytest
import server_support as S
from modelyard.errors import InvalidRequest, NotFound, Unsupported
from modelyard.schemas import ChatMessage
from modelyard.server.responses_convert import ResponseWriter, to_chat
from modelyard.server.responses_schemas import RESPONSES, Response, StreamEvent
from modelyard.server.responses_store import ResponseStore, Stored

pytestmark = pytest.mark.anyio


def request(**body: Any) -> Any:
    return RESPONSES.decode(json.dumps({"model": "m", "input": "hi", **body}))


def plain(chat: Any) -> list[dict[str, Any]]:
    return msgspec.to_builtins(chat.messages)


# -- request translation --


def test_string_input_with_instructions_and_limits() -> None:
    chat = to_chat(
        request(instructions="Be brief.", max_output_tokens=20, temperature=0.3, top_p=0.8), []
    )
    assert plain(chat) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    assert (chat.max_tokens, chat.temperature, chat.top_p) == (20, 0.3, 0.8)


def test_items_with_function_calls_and_outputs() -> None:
    items = [
        {"role": "developer", "content": "Use tools."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": "25C"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Warm."}]},
    ]  # fmt: skip
    chat = to_chat(request(input=items), [])
    call = lambda i, city: {"id": i, "type": "function", "function": {"name": "weather", "arguments": f'{{"city":"{city}"}}'}}  # noqa: E731  # fmt: skip
    assert plain(chat) == [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [call("c1", "Paris"), call("c2", "Rome")]},
        {"role": "tool", "content": "18C", "tool_call_id": "c1"},
        {"role": "tool", "content": "25C", "tool_call_id": "c2"},
        {"role": "assistant", "content": "Warm."},
    ]


def test_tools_tool_choice_and_json_schema_format() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    chat = to_chat(
        request(
            tools=[{"type": "function", "name": "weather", "parameters": schema, "strict": True}],
            tool_choice={"type": "function", "name": "weather"},
            text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
        ),
        [],
    )
    assert chat.tools is not None and chat.tools[0].function.name == "weather"
    assert chat.tool_choice == {"type": "function", "function": {"name": "weather"}}
    assert chat.response_format is not None
    assert msgspec.to_builtins(chat.response_format) == {
        "type": "json_schema",
        "json_schema": {"name": "place", "schema": schema},
    }


def test_translated_requests_obey_the_chat_schema_rules() -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request(tools=[{"type": "function", "name": "f", "parameters": {"type": "string"}}]), [])  # fmt: skip
    assert caught.value.param == "tools[0]" and "object" in caught.value.message
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request(tools=[{"type": "function", "name": "x" * 65}]), [])
    assert caught.value.param == "tools[0]"


def test_history_comes_before_the_new_input() -> None:
    history = [ChatMessage(role="user", content="a"), ChatMessage(role="assistant", content="b")]
    chat = to_chat(request(input="c", instructions="sys"), history)
    assert [m.content for m in chat.messages] == ["sys", "a", "b", "c"]


def test_refusals_name_the_path() -> None:
    with pytest.raises(Unsupported) as caught:
        to_chat(request(tools=[{"type": "web_search"}]), [])
    assert caught.value.param == "tools[0].type"
    with pytest.raises(InvalidRequest) as caught:
        to_chat(request(input=[{"type": "function_call_output", "output": "x"}]), [])
    assert caught.value.param == "input[0].call_id"


# -- output translation --


def test_text_answer_and_its_events() -> None:
    writer = ResponseWriter(request())
    events = writer.start()
    for chunk in S.chat_chunks(["Hello", " there"]):
        events += writer.feed(chunk)
    events += writer.finish()
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        msgspec.convert(event, StreamEvent)
    final = events[-1]["response"]
    msgspec.convert(final, Response)
    assert final["status"] == "completed"
    assert final["output"][0]["content"][0]["text"] == "Hello there"
    assert final["usage"]["input_tokens"] == 5 and final["usage"]["total_tokens"] == 7
    assert events[0]["response"]["status"] == "in_progress"
    assert events[2]["item"]["content"] == []  # the added item is a snapshot, not the final one


def test_tool_call_and_cut_answer() -> None:
    writer = ResponseWriter(request())
    call = {"index": 0, "id": "call_9", "function": {"name": "weather", "arguments": '{"a":'}}
    events = writer.feed({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]})
    more = {"index": 0, "function": {"arguments": "1}"}}
    events += writer.feed(
        {"choices": [{"index": 0, "delta": {"tool_calls": [more]}, "finish_reason": "length"}]}
    )
    events += writer.finish()
    assert [e["type"] for e in events] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.incomplete",
    ]  # fmt: skip
    final = events[-1]["response"]
    assert final["status"] == "incomplete"
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    item = final["output"][0]
    assert (item["type"], item["call_id"], item["name"], item["arguments"]) == (
        "function_call", "call_9", "weather", '{"a":1}',
    )  # fmt: skip
    remembered = msgspec.to_builtins(writer.answer_messages())
    assert remembered == [
        {"role": "assistant", "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "weather", "arguments": '{"a":1}'}}]}
    ]  # fmt: skip


# -- the store --


def test_store_is_bounded_lru_and_404_names_the_id() -> None:
    store = ResponseStore(size=2)
    for name in ("a", "b"):
        store.put(name, Stored({"id": name}, []))
    store.get("a")  # used: "b" is now the oldest
    store.put("c", Stored({"id": "c"}, []))
    assert len(store) == 2
    with pytest.raises(NotFound) as caught:
        store.get("b", param="previous_response_id")
    assert "'b'" in caught.value.message and caught.value.param == "previous_response_id"
    store.delete("a")
    with pytest.raises(NotFound):
        store.get("a")


def test_store_size_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_RESPONSES_STORE_SIZE", "3")
    assert ResponseStore().size == 3
    monkeypatch.setenv("MODELYARD_RESPONSES_STORE_SIZE", "lots")
    with pytest.raises(ValueError, match="MODELYARD_RESPONSES_STORE_SIZE"):
        ResponseStore()


# -- routes --


@pytest.fixture
async def client() -> Any:
    app, manager = S.app_with()
    manager.add("m")
    async with S.asgi_client(app) as http:
        http.manager = manager
        yield http


async def test_chaining_get_delete_and_unknown_ids(client: Any) -> None:
    first = (await client.post("/v1/responses", json={"model": "m", "input": "hi"})).json()
    assert first["output"][0]["content"][0]["text"] == "Hello there!"
    second = await client.post(
        "/v1/responses",
        json={"model": "m", "input": "again", "previous_response_id": first["id"]},
    )
    assert second.status_code == 200
    sent = client.manager.requests[-1]
    assert [(m.role, m.content) for m in sent.messages] == [
        ("user", "hi"),
        ("assistant", "Hello there!"),
        ("user", "again"),
    ]
    assert (await client.get(f"/v1/responses/{first['id']}")).json() == first
    deleted = await client.delete(f"/v1/responses/{first['id']}")
    assert deleted.json() == {"id": first["id"], "object": "response", "deleted": True}
    gone = await client.post(
        "/v1/responses", json={"model": "m", "input": "x", "previous_response_id": first["id"]}
    )
    assert gone.status_code == 404 and first["id"] in gone.json()["error"]["message"]
    assert gone.json()["error"]["param"] == "previous_response_id"
    assert (await client.get("/v1/responses/resp_nope")).status_code == 404


async def test_input_items_are_listed_back(client: Any) -> None:
    items = [
        {"role": "user", "content": "one"},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "two"}], "id": "msg_mine"},
    ]  # fmt: skip
    created = (await client.post("/v1/responses", json={"model": "m", "input": items})).json()
    listed = (await client.get(f"/v1/responses/{created['id']}/input_items?order=asc")).json()
    assert listed["object"] == "list" and listed["has_more"] is False
    data = listed["data"]
    assert [item["type"] for item in data] == ["message", "function_call_output", "message"]
    assert data[0]["content"] == [{"type": "input_text", "text": "one"}]
    assert data[2]["id"] == "msg_mine" and listed["last_id"] == "msg_mine"
    newest = (await client.get(f"/v1/responses/{created['id']}/input_items?limit=1")).json()
    assert [item["id"] for item in newest["data"]] == ["msg_mine"] and newest["has_more"] is True
    after = f"/v1/responses/{created['id']}/input_items?order=asc&after={data[0]['id']}"
    assert [item["id"] for item in (await client.get(after)).json()["data"]] == [data[1]["id"], "msg_mine"]  # fmt: skip
    bad = await client.get(f"/v1/responses/{created['id']}/input_items?limit=0")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "limit"


async def test_store_false_is_not_kept(client: Any) -> None:
    body = (await client.post("/v1/responses", json={"model": "m", "input": "hi", "store": False})).json()  # fmt: skip
    assert body["store"] is False
    assert (await client.get(f"/v1/responses/{body['id']}")).status_code == 404


async def test_streamed_response_is_stored(client: Any) -> None:
    response = await client.post("/v1/responses", json={"model": "m", "input": "hi", "stream": True})  # fmt: skip
    blocks = response.text.strip().split("\n\n")
    events = [json.loads(block.split("\ndata: ", 1)[1]) for block in blocks]
    assert all(block.startswith(f"event: {e['type']}\n") for block, e in zip(blocks, events, strict=True))  # fmt: skip
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert (await client.get(f"/v1/responses/{final['id']}")).json() == final


# -- the official SDK against a real HTTP server (fake engine) --


@pytest.fixture(scope="module")
def sdk() -> Any:
    app, manager = S.app_with()
    manager.add("m")
    with (
        S.running_server(app) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client,
    ):
        yield client


def test_sdk_create_stream_chain_and_404(sdk: openai.OpenAI) -> None:
    first = sdk.responses.create(model="m", input="hi", instructions="Be brief.")
    assert first.output_text == "Hello there!" and first.status == "completed"
    assert first.usage is not None and first.usage.output_tokens == 3
    events = list(sdk.responses.create(model="m", input="hi", stream=True))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "Hello there!"  # type: ignore[union-attr]  # fmt: skip
    with sdk.responses.stream(model="m", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello there!"
    chained = sdk.responses.create(model="m", input="more", previous_response_id=first.id)
    assert chained.previous_response_id == first.id
    assert sdk.responses.retrieve(first.id).id == first.id
    [item] = sdk.responses.input_items.list(first.id).data
    assert item.type == "message" and item.content[0].text == "hi"  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.responses.create(model="m", input="x", previous_response_id="resp_unknown")
    assert "resp_unknown" in str(caught.value)
