"""Limits at the edge: body size (413 before the body is read), JSON depth, integer ranges,
content parts against the model's abilities, and malformed tool calls; each a 4xx naming what
to change, never a 500."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import server_support as S
from modelyard.catalog import Catalog
from modelyard.errors import InvalidRequest
from modelyard.runner import protocol as p
from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard.server import create_app
from modelyard.server.limits import check_depth

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "hi"}]
ROUTES = {
    "/v1/chat/completions": {"model": "chat", "messages": HELLO},
    "/v1/completions": {"model": "chat", "prompt": "hi"},
    "/v1/embeddings": {"model": "emb", "input": "hi"},
    "/v1/rerank": {"model": "rr", "query": "q", "documents": ["d"]},
    "/v1/models": {"model_name": "toy-chat"},
    "/v1/model_registrations/LLM": {"model": "{}"},
}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"]["message"] == body["detail"]
    return body["error"]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    manager = S.FakeManager()
    app = create_app(manager, max_body_size=8192)  # type: ignore[arg-type]
    manager.add("chat")
    manager.add("emb", model_type="embedding")
    manager.add("rr", model_type="rerank")
    vision = manager.add("eyes")
    vision.abilities = ("chat", "vision")
    app.state.catalog = Catalog(
        [S.LLM, S.EMBED, S.RERANK], registrations_dir=Path(tempfile.mkdtemp()) / "registrations"
    )
    async with S.asgi_client(app) as http:
        http.headers["content-type"] = "application/json"  # JSON routes take only JSON
        yield http


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def nested_bytes(depth: int) -> bytes:
    return b'[{"a": ' * (depth // 2) + b"1" + b"}]" * (depth // 2) + b"[]" * (depth % 2)


# --- body size ---
@pytest.mark.parametrize("path", sorted(ROUTES))
async def test_a_declared_size_over_the_limit_is_a_413_naming_it(
    client: httpx.AsyncClient, path: str
) -> None:
    body = json.dumps({**ROUTES[path], "pad": "x" * 9000}).encode()
    error = error_of(await client.post(path, content=body), 413)
    assert "8 KiB (8192 bytes)" in error["message"] and "--max-body-size" in error["message"]
    assert error["code"] == "request_too_large"


async def test_a_streamed_body_is_counted_and_refused_before_its_end(
    client: httpx.AsyncClient,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"model": "chat", "messages": [{"role": "user", "content": "'
        for _ in range(100):  # 100 KiB in all, the limit is 8 KiB
            sent += 1
            yield b"x" * 1024
        yield b'"}]}'

    error = error_of(await client.post("/v1/chat/completions", content=chunks()), 413)
    assert "8192 bytes" in error["message"]
    assert sent < 100  # the server stopped reading once over the limit


async def test_the_default_limit_is_32_mib() -> None:
    manager = S.FakeManager()
    manager.add("chat")
    async with S.asgi_client(create_app(manager)) as http:  # type: ignore[arg-type]
        too_big = await http.post(
            "/v1/chat/completions",
            content=b"{}",
            headers={
                "content-length": str(32 * 1024 * 1024 + 1),
                "content-type": "application/json",
            },
        )
    assert "32 MiB" in error_of(too_big, 413)["message"]


# --- JSON depth ---
@pytest.mark.parametrize("path", sorted(ROUTES))
@pytest.mark.parametrize("depth", [65, 1000, 1500])
async def test_deep_nesting_is_a_400_on_every_route(
    client: httpx.AsyncClient, path: str, depth: int
) -> None:
    # Built as bytes: json.dumps itself cannot write a value this deep.
    body = json.dumps(ROUTES[path]).encode()[:-1] + b', "extra": ' + nested_bytes(depth) + b"}"
    error = error_of(await client.post(path, content=body), 400)
    assert "nested more than 64" in error["message"]


async def test_nesting_within_the_limit_is_fine(client: httpx.AsyncClient) -> None:
    body = {"model": "chat", "messages": HELLO, "chat_template_kwargs": {"x": nested(60)}}
    assert (await client.post("/v1/chat/completions", json=body)).status_code == 200


def test_brackets_inside_strings_do_not_count() -> None:
    check_depth(json.dumps({"text": "[" * 500 + '\\"{' * 100}).encode())
    with pytest.raises(InvalidRequest):
        check_depth(json.dumps({"a": nested(70), "text": '"]]]'}).encode())


# --- integers and non-finite numbers ---
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"seed": 2**70}, "$.seed"),
        ({"seed": -(2**64)}, "$.seed"),
        ({"max_tokens": 2**40}, "$.max_tokens"),
        ({"top_k": 2**33}, "$.top_k"),
        ({"stop_token_ids": [1, 2**64]}, "$.stop_token_ids[1]"),
        ({"chat_template_kwargs": {"a": [0, 2**64]}}, "chat_template_kwargs.a[1]"),
        ({"tool_choice": {"type": "function", "n": 10**30}}, "tool_choice.n"),
        (
            {"tools": [{"function": {"name": "f", "parameters": {"maximum": 10**25}}}]},
            "parameters.maximum",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"x": 2**80}}}},
            "schema.x",
        ),
    ],
)
async def test_numbers_out_of_range_are_400_naming_the_field(
    client: httpx.AsyncClient, extra: dict[str, Any], needle: str
) -> None:
    body = json.dumps({"model": "chat", "messages": HELLO, **extra}).encode()
    error = error_of(await client.post("/v1/chat/completions", content=body), 400)
    assert needle in error["message"], error["message"]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_nan_and_infinity_are_refused(client: httpx.AsyncClient, literal: bytes) -> None:
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "top_p": ' + literal
    error_of(await client.post("/v1/chat/completions", content=body + b"}"), 400)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"model": "chat", "prompt": [1, 2**40]}),
        ("/v1/embeddings", {"model": "emb", "input": [[1, 2**70]]}),
        ("/v1/models", {"model_name": "toy-chat", "n_ctx": 2**64}),
        ("/v1/models", {"model_name": "toy-chat", "sampling": {"seed": [-(2**70)]}}),
    ],
)
async def test_big_integers_on_other_routes_are_400(
    client: httpx.AsyncClient, path: str, body: dict[str, Any]
) -> None:
    error_of(await client.post(path, content=json.dumps(body).encode()), 400)


def test_an_oversized_integer_never_reaches_the_wire_as_an_overflow() -> None:
    request = ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="x")], seed=2**70
    )
    with pytest.raises(InvalidRequest, match="64 bits"):
        p.make_call(1, "chat", request)
    assert msgspec.msgpack.decode(p.ENCODER.encode(p.make_call(1, "chat", request.__class__(model="m", messages=request.messages))))  # fmt: skip


# --- content parts and tool calls ---
@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}, "image_url"),
        ({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}, "input_audio"),
    ],
)
async def test_a_part_the_model_cannot_take_is_a_400_naming_it(
    client: httpx.AsyncClient, part: dict[str, Any], needle: str
) -> None:
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "what is this?"}, part]},
    ]
    response = await client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": messages}
    )
    error = error_of(response, 400)
    assert error["param"] == "messages[1].content[1]"
    assert needle in error["message"] and "accepts text" in error["message"]


async def test_an_image_goes_to_a_model_with_vision(client: httpx.AsyncClient) -> None:
    part = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": "user", "content": [part]}]
    response = await client.post(
        "/v1/chat/completions", json={"model": "eyes", "messages": messages}
    )
    assert response.status_code == 200, response.text
    audio = {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "eyes", "messages": [{"role": "user", "content": [audio]}]},
    )
    assert "accepts text and vision" in error_of(response, 400)["message"]


@pytest.mark.parametrize(
    ("calls", "needle"),
    [
        (["get_weather"], "Expected `object`"),
        ([{"id": "1", "type": "function"}], "tool_calls[0].function"),
        ([{"id": "1", "function": {"arguments": "{}"}}], "tool_calls[0].function.name"),
        ([{"id": "1", "function": {"name": "f", "arguments": 3}}], "function.arguments"),
        ([{"id": "1", "type": "retrieval", "function": {"name": "f"}}], "tool_calls[0].type"),
        ([{"id": 7, "function": {"name": "f", "arguments": "{}"}}], "tool_calls[0].id"),
        ({"id": "1"}, "Expected `array"),
    ],
)
async def test_malformed_tool_calls_are_400_at_the_edge(
    client: httpx.AsyncClient, calls: Any, needle: str
) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
    ]
    response = await client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": messages}
    )
    error = error_of(response, 400)
    assert needle in error["message"], error["message"]
    assert "$.messages[1]" in error["message"]


async def test_well_formed_tool_calls_pass(client: httpx.AsyncClient) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    response = await client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": messages}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1 << 20),
        ("512KiB", 512 << 10),
        ("64MiB", 64 << 20),
        ("1GiB", 1 << 30),
        ("2MB", 2_000_000),
    ],
)
def test_max_body_size_option_reads_units(text: str, size: int) -> None:
    from modelyard.cli.options import ByteSize

    assert ByteSize().convert(text, None, None) == size


@pytest.mark.parametrize("text", ["", "lots", "0", "5 parsecs", "-1MiB"])
def test_max_body_size_option_refuses_nonsense(text: str) -> None:
    import click
    from modelyard.cli.options import ByteSize

    with pytest.raises(click.BadParameter):
        ByteSize().convert(text, None, None)
