"""The Anthropic and Responses streams: failures midway, clients that leave, and the property
that a client replaying the events gets the same answer as the unstreamed reply."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import server_support as S
from hypothesis import given, settings
from hypothesis import strategies as st
from modelyard.errors import Unavailable
from modelyard.server.anthropic_convert import EventWriter
from modelyard.server.responses_convert import ResponseWriter
from modelyard.server.responses_schemas import RESPONSES

HELLO = [{"role": "user", "content": "hi"}]
ANTHROPIC = ("/v1/messages", {"model": "m", "max_tokens": 8, "messages": HELLO, "stream": True})
RESPONSES_CALL = ("/v1/responses", {"model": "m", "input": "hi", "stream": True})


def sse(raw: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.strip().split("\n\n"):
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: "), block
        events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


@pytest.mark.anyio
@pytest.mark.parametrize(("path", "body"), [ANTHROPIC, RESPONSES_CALL])
async def test_a_failure_midway_ends_the_stream_with_an_error_event(path: str, body: Any) -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream(
        S.chat_chunks(["a", "b", "c"]), fail=(2, Unavailable("runner died (SIGKILL)"))
    )
    async with S.asgi_client(app) as http:
        response = await http.post(path, json=body)
    events = sse(response.text)
    name, data = events[-1]
    if path == "/v1/messages":
        assert name == "error"
        assert data == {"type": "error", "error": {"type": "overloaded_error", "message": "runner died (SIGKILL)"}}  # fmt: skip
    else:
        assert name == "response.failed" and data["response"]["status"] == "failed"
        assert data["response"]["error"]["message"] == "runner died (SIGKILL)"
    assert manager.streams[0].closed.is_set()


@pytest.mark.parametrize(("path", "body"), [ANTHROPIC, RESPONSES_CALL])
def test_a_client_leaving_stops_the_engine(path: str, body: Any) -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    with S.running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        with http.stream("POST", path, json=body) as response:
            assert next(response.iter_lines()).startswith("event: ")
        assert manager.streams[0].closed.wait(timeout=30)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/messages", {**ANTHROPIC[1], "stream": False}), ("/v1/responses", {"model": "m", "input": "hi"})],
)  # fmt: skip
def test_a_client_leaving_an_unstreamed_call_stops_the_engine(path: str, body: Any) -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    with S.running_server(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}{path}", json=body, timeout=0.5)
        assert manager.streams[0].closed.wait(timeout=30)


# -- replaying the events gives the unstreamed answer --

piece = st.text(alphabet="ab \n{}é", min_size=1, max_size=4)
delta = st.one_of(
    st.tuples(st.just("content"), piece),
    st.tuples(st.just("reasoning_content"), piece),
    st.tuples(
        st.just("call"),
        st.integers(0, 2),
        st.dictionaries(st.sampled_from("xyz"), st.integers(), max_size=2),
    ),
)


def engine_chunks(deltas: list[Any], finish: str) -> list[dict[str, Any]]:
    """Chunks as an engine streams them; a tool call's JSON arguments arrive in two pieces."""
    chunks: list[dict[str, Any]] = []
    seen: set[int] = set()
    for kind, *rest in deltas:
        if kind != "call":
            chunks.append({"choices": [{"index": 0, "delta": {kind: rest[0]}}]})
            continue
        index, arguments = rest
        if index in seen:
            continue  # one call per index, as engines stream them
        seen.add(index)
        text = json.dumps(arguments)
        head = {"index": index, "id": f"call_{index}", "type": "function", "function": {"name": f"f{index}", "arguments": text[:1]}}  # fmt: skip
        tail = {"index": index, "function": {"arguments": text[1:]}}
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [head]}}]})
        chunks.append({"choices": [{"index": 0, "delta": {"tool_calls": [tail]}}]})
    usage = {"prompt_tokens": 3, "completion_tokens": len(chunks), "total_tokens": 3 + len(chunks)}
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage})
    return chunks


@settings(max_examples=60, deadline=None)
@given(st.lists(delta, max_size=8), st.sampled_from(["stop", "length", "tool_calls"]))
def test_anthropic_events_replay_to_the_message(deltas: list[Any], finish: str) -> None:
    chunks = engine_chunks(deltas, finish)
    streamed, whole = EventWriter("m"), EventWriter("m")
    events = streamed.start()
    for chunk in chunks:
        events += streamed.feed(chunk)
        whole.feed(chunk)
    events += streamed.finish()
    # What the anthropic SDK's accumulator does with the events:
    message = events[0][1]["message"]
    partial: dict[int, str] = {}
    for name, data in events[1:]:
        if name == "content_block_start":
            message["content"].append(dict(data["content_block"]))
        elif name == "content_block_delta":
            block, d = message["content"][data["index"]], data["delta"]
            if d["type"] == "input_json_delta":
                partial[data["index"]] = partial.get(data["index"], "") + d["partial_json"]
            else:
                field = "text" if d["type"] == "text_delta" else "thinking"
                block[field] += d[field]
        elif name == "content_block_stop" and data["index"] in partial:
            message["content"][data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"].update(data["usage"])
    expected = whole.message()
    for block in expected["content"]:
        block.pop("signature", None)
    assert {**message, "id": None} == {**expected, "id": None}
    assert [name for name, _ in events][-2:] == ["message_delta", "message_stop"]


@settings(max_examples=60, deadline=None)
@given(st.lists(delta, max_size=8), st.sampled_from(["stop", "length", "tool_calls"]))
def test_responses_events_replay_to_the_response(deltas: list[Any], finish: str) -> None:
    chunks = engine_chunks(deltas, finish)
    body = RESPONSES.decode(b'{"model": "m", "input": "hi"}')
    streamed, whole = ResponseWriter(body), ResponseWriter(body)
    events = streamed.start()
    for chunk in chunks:
        events += streamed.feed(chunk)
        whole.feed(chunk)
    events += streamed.finish()
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    done = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    final = events[-1]["response"]
    assert done == final["output"]
    expected = whole.result()

    def anonymous(response: dict[str, Any]) -> dict[str, Any]:
        output = [{**item, "id": None} for item in response["output"]]
        return {**response, "id": None, "created_at": None, "output": output}

    assert anonymous(final) == anonymous(expected)
    texts = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert texts == "".join(d[1] for d in deltas if d[0] == "content")


@pytest.mark.anyio
async def test_metrics_count_both_apis_under_their_canonical_routes() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    app, manager = S.app_with()
    manager.add("m")
    async with S.asgi_client(app) as http:
        await http.post("/anthropic/v1/messages", json={**ANTHROPIC[1], "stream": False})
        await http.post(ANTHROPIC[0], json=ANTHROPIC[1])
        await http.post(RESPONSES_CALL[0], json=RESPONSES_CALL[1])
        text = (await http.get("/metrics")).text
    found = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }

    def requests(route: str) -> float:
        labels = {"method": "POST", "route": route, "model": "m", "status": "200"}
        return found.get(("modelyard_requests_total", frozenset(labels.items())), 0)

    assert requests("/v1/messages") == 2 and requests("/v1/responses") == 1
    tokens = ("modelyard_generated_tokens_total", frozenset({("model", "m")}))
    assert found[tokens] == 9  # three answers of three tokens each
