"""Every failure is one JSON shape (OpenAI ``error`` + Xinference ``detail``) with the right status."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import server_support as S
from modelyard.errors import Overloaded, Unavailable
from starlette.requests import Request
from starlette.routing import Route

pytestmark = pytest.mark.anyio


HELLO = [{"role": "user", "content": "hi"}]


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] == body["detail"]
    assert error["message"]
    if type_ is not None:
        assert error["type"] == type_
    return error


@pytest.fixture
async def client() -> Any:
    app, manager = S.app_with()
    manager.add("chat")
    async with S.asgi_client(app) as http:
        http.manager = manager
        yield http


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b'{"model": "chat", "messages": [', None, "malformed JSON"),
        (b"", None, "empty"),
        (b"[1, 2]", None, "Expected `object`"),
        (b'{"model": "chat", "messages": []}', "messages", "$.messages"),
        (b'{"model": "chat", "messages": "hello"}', "messages", "$.messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', None, "model"),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": 5}',
            "temperature",
            "$.temperature",
        ),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}',
            "temperature",
            "$.temperature",
        ),
        (
            b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "top_p": 1.5}',
            "top_p",
            "$.top_p",
        ),
        (b'{"model": "chat", "messages": [{"role": "user", "content": "x"}], "n": 0}', "n", "$.n"),
        (
            b'{"model": "chat", "messages": [{"role": "wizard", "content": "x"}]}',
            "messages[0].role",
            "$.messages[0].role",
        ),
        (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', "model", "$.model"),
    ],
)
async def test_bad_chat_bodies_are_400_naming_the_field(
    client: Any, body: bytes, param: str | None, needle: str
) -> None:
    response = await client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    error = assert_error(response, 400, "invalid_request_error")
    assert error["param"] == param
    assert needle in error["message"]
    assert not client.manager.requests  # nothing reached the engine


async def test_unknown_fields_are_tolerated(client: Any) -> None:
    body = {
        "model": "chat",
        "messages": HELLO,
        "lora_name": None,
        "stream_interval": 2,
        "chat_template_kwargs": {"x": 1},
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text


async def test_completion_prompt_must_be_one_kind_of_list(client: Any) -> None:
    response = await client.post("/v1/completions", json={"model": "chat", "prompt": ["a", 1]})
    error = assert_error(response, 400)
    assert "prompt" in error["message"]


async def test_unknown_model_is_a_404_naming_it(client: Any) -> None:
    response = await client.post(
        "/v1/chat/completions", json={"model": "no-such-model", "messages": HELLO}
    )
    error = assert_error(response, 404, "not_found_error")
    assert "no-such-model" in error["message"]
    assert error["code"] == "model_not_found"


async def test_unknown_route_and_wrong_method_are_json(client: Any) -> None:
    missing = await client.get("/v1/nowhere")
    assert "/v1/nowhere" in assert_error(missing, 404, "not_found_error")["message"]
    wrong = await client.put("/v1/chat/completions", json={})
    assert_error(wrong, 405)
    assert "POST" in wrong.headers["allow"]


async def test_overload_passes_through_with_retry_after(client: Any) -> None:
    client.manager.raise_on_call = Overloaded(
        "model 'chat' has 64 requests waiting; retry later", retry_after=2
    )
    response = await client.post("/v1/chat/completions", json={"model": "chat", "messages": HELLO})
    assert_error(response, 429, "rate_limit_error")
    assert response.headers["retry-after"] == "2"


async def test_a_loading_model_is_503_with_retry_after(client: Any) -> None:
    client.manager.add("slow", state="loading")
    response = await client.post("/v1/chat/completions", json={"model": "slow", "messages": HELLO})
    error = assert_error(response, 503, "service_unavailable")
    assert "loading" in error["message"]
    assert int(response.headers["retry-after"]) > 0


async def test_a_failed_model_is_503_with_its_cause(client: Any) -> None:
    client.manager.add("dead", state="error", error="runner killed by SIGKILL")
    response = await client.post("/v1/chat/completions", json={"model": "dead", "messages": HELLO})
    assert "SIGKILL" in assert_error(response, 503)["message"]


async def test_error_before_the_first_chunk_is_a_plain_http_error(client: Any) -> None:
    client.manager.next_stream["chat"] = lambda: S.FakeStream(
        [], fail=(0, Unavailable("runner died: SIGKILL"))
    )
    response = await client.post(
        "/v1/chat/completions", json={"model": "chat", "messages": HELLO, "stream": True}
    )
    assert "SIGKILL" in assert_error(response, 503)["message"]
    assert client.manager.streams[-1].closed.is_set()


async def test_an_unexpected_exception_is_a_json_500() -> None:
    app, _ = S.app_with()

    async def broken(request: Request) -> None:
        raise RuntimeError("boom")

    app.router.routes.append(Route("/broken", broken))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        response = await http.get("/broken")
    error = assert_error(response, 500, "internal_error")
    assert "boom" in error["message"]


async def test_an_ability_the_model_lacks_is_a_400(client: Any) -> None:
    client.manager.add("emb", model_type="embedding")
    response = await client.post("/v1/chat/completions", json={"model": "emb", "messages": HELLO})
    assert assert_error(response, 400)["code"] == "unsupported"
