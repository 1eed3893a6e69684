"""Streaming: SSE framing, usage chunks, errors midway, concurrency, and cancelling on disconnect."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest
import server_support as S
from modelyard.errors import Unavailable

pytestmark = pytest.mark.anyio
HELLO = [{"role": "user", "content": "hi"}]


def parse_events(raw: str) -> list[Any]:
    """Split an SSE body into events; each must be exactly one ``data:`` line."""
    assert raw.endswith("\n\n")
    events = []
    for block in raw[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, block
        payload = block.removeprefix("data: ")
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


async def stream(
    body: dict[str, Any], path: str = "/v1/chat/completions", manager: Any = None
) -> tuple[httpx.Response, list[Any], Any]:
    app, manager = S.app_with(manager)
    if "m" not in manager.records:
        manager.add("m")
    async with S.asgi_client(app) as http:
        response = await http.post(path, json={"model": "m", "stream": True, **body})
    return response, parse_events(response.text), manager


async def test_chat_stream_framing_headers_and_done() -> None:
    response, events, manager = await stream({"messages": HELLO})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Hello there!"
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert all(
        c["object"] == "chat.completion.chunk"
        and c["model"] == "m"
        and isinstance(c["created"], int)
        for c in chunks
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert manager.streams[0].closed.is_set()


async def test_usage_is_dropped_unless_asked() -> None:
    _, events, _ = await stream({"messages": HELLO})
    assert all("usage" not in c for c in events[:-1])
    _, events, _ = await stream({"messages": HELLO, "stream_options": {"include_usage": False}})
    assert all("usage" not in c for c in events[:-1])


async def test_usage_comes_last_in_its_own_chunk_when_asked() -> None:
    _, events, _ = await stream({"messages": HELLO, "stream_options": {"include_usage": True}})
    *chunks, usage_chunk, done = events
    assert done == "[DONE]"
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    assert usage_chunk["id"] == chunks[0]["id"]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_completion_stream_is_text_completion_with_cmpl_id() -> None:
    _, events, _ = await stream({"prompt": "The capital of France is"}, "/v1/completions")
    chunks = events[:-1]
    assert events[-1] == "[DONE]"
    assert all(c["object"] == "text_completion" and c["id"].startswith("cmpl-") for c in chunks)
    assert "".join(c["choices"][0]["text"] for c in chunks) == "Paris is"


async def test_an_error_midway_is_an_error_event_then_the_end() -> None:
    manager = S.FakeManager()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream(
        S.chat_chunks(["a", "b", "c"]), fail=(2, Unavailable("runner died (SIGKILL)"))
    )
    response, events, _ = await stream({"messages": HELLO}, manager=manager)
    assert response.status_code == 200
    assert len(events) == 3 and "[DONE]" not in events
    assert events[-1]["error"]["message"] == "runner died (SIGKILL)"
    assert events[-1]["error"]["type"] == "service_unavailable"
    assert manager.streams[0].closed.is_set()


async def test_an_engine_error_chunk_ends_the_stream() -> None:
    manager = S.FakeManager()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream(
        [*S.chat_chunks(["a"])[:2], {"error": {"message": "kv cache full"}}, *S.chat_chunks(["z"])]
    )
    _, events, _ = await stream({"messages": HELLO}, manager=manager)
    assert events[-1]["error"]["message"] == "kv cache full"
    assert all("z" not in json.dumps(e) for e in events)


def _scope(path: str) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }  # fmt: skip


async def _call_then_disconnect(
    app: Any, body: dict[str, Any], after_bodies: int
) -> list[dict[str, Any]]:
    """Drive the ASGI app by hand: the client disconnects once ``after_bodies`` body parts arrived."""
    sent: list[dict[str, Any]] = []
    enough = anyio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await enough.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if sum(m["type"] == "http.response.body" for m in sent) >= after_bodies:
            enough.set()

    if after_bodies == 0:
        enough.set()
    with anyio.fail_after(30):  # a deadlock guard: an uncancelled endless stream would never end
        await app(_scope("/v1/chat/completions"), receive, send)
    return sent


async def test_disconnect_midstream_closes_the_generation() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    sent = await _call_then_disconnect(
        app, {"model": "m", "messages": HELLO, "stream": True}, after_bodies=3
    )
    assert sent[0]["status"] == 200
    assert manager.streams[0].closed.is_set()
    assert manager.in_flight == 0


async def test_disconnect_before_the_first_chunk_cancels_the_generation() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.gate = anyio.Event()  # never set: the engine is stuck "prefilling"
    sent = await _call_then_disconnect(
        app, {"model": "m", "messages": HELLO, "stream": True}, after_bodies=0
    )
    assert manager.peak_in_flight == 1 and manager.in_flight == 0
    assert sent[0]["status"] == 499


async def test_disconnect_during_a_non_streamed_generation_cancels_it() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    await _call_then_disconnect(app, {"model": "m", "messages": HELLO}, after_bodies=0)
    assert manager.streams[0].sent >= 1
    assert manager.streams[0].closed.is_set()


def test_a_real_client_closing_the_connection_stops_the_engine() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    with S.running_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        body = {"model": "m", "messages": HELLO, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        # The response is closed: the server notices the disconnect and closes the stream.
        assert manager.streams[0].closed.wait(timeout=30)


async def test_requests_reach_the_engine_concurrently() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.gate = anyio.Event()
    results: list[httpx.Response] = []
    async with S.asgi_client(app) as http:

        async def one(stream: bool) -> None:
            results.append(
                await http.post(
                    "/v1/chat/completions", json={"model": "m", "messages": HELLO, "stream": stream}
                )
            )

        with anyio.fail_after(30):  # a deadlock guard: serialised requests would never all arrive
            async with anyio.create_task_group() as tg:
                for stream in (True, False, True):
                    tg.start_soon(one, stream)
                while manager.in_flight < 3:
                    await anyio.sleep(0.01)
                manager.gate.set()
    assert manager.peak_in_flight == 3
    assert [r.status_code for r in results] == [200, 200, 200]


async def _call_until_shutdown(app: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    """Drive the app by hand; the server begins its shutdown once the engine holds the request."""
    from modelyard.server.app import begin_shutdown

    app.state.stopping = anyio.Event()  # what the lifespan sets up
    sent: list[dict[str, Any]] = []
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}
        await anyio.sleep_forever()  # the client never leaves
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async with anyio.create_task_group() as tg:

        async def call() -> None:
            with anyio.fail_after(30):  # a deadlock guard
                await app(_scope("/v1/chat/completions"), receive, send)

        tg.start_soon(call)
        with anyio.fail_after(30):
            while not app.state.manager.in_flight:
                await anyio.sleep(0.01)
        await anyio.sleep(0.05)
        begin_shutdown(app)
    return sent


async def test_shutdown_ends_a_stream_with_an_error_event() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.next_stream["m"] = lambda: S.FakeStream([], endless=True)
    sent = await _call_until_shutdown(app, {"model": "m", "messages": HELLO, "stream": True})
    assert sent[0]["status"] == 200
    bodies = b"".join(m.get("body", b"") for m in sent[1:])
    last = parse_events(bodies.decode())[-1]
    assert last["error"]["type"] == "service_unavailable"
    assert "shutting down" in last["error"]["message"]
    assert sent[-1]["more_body"] is False
    assert manager.streams[0].closed.is_set() and manager.in_flight == 0


async def test_shutdown_answers_a_waiting_request_with_503() -> None:
    app, manager = S.app_with()
    manager.add("m")
    manager.gate = anyio.Event()  # the engine never answers
    sent = await _call_until_shutdown(app, {"model": "m", "messages": HELLO})
    assert sent[0]["status"] == 503
    assert b"shutting down" in sent[1]["body"]
    assert manager.in_flight == 0
