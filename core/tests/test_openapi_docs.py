"""``/openapi.json`` describes every route from the msgspec types, the types match real replies,
and ``/docs`` renders it from local files only."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest
import server_support as S
from modelyard.server import api_types as T
from modelyard.server.app import METRICS_ROUTE, ROUTES
from modelyard.server.docs import ASSETS
from openapi_spec_validator import validate

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client() -> Any:
    app, manager = S.app_with()
    manager.add("chat")
    manager.add("emb", model_type="embedding")
    manager.add("rr", model_type="rerank")
    async with S.asgi_client(app) as http:
        yield http


@pytest.fixture
async def spec(client: Any) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_spec_is_valid_openapi_3_1(spec: dict[str, Any]) -> None:
    validate(spec)  # raises on any structural error, unresolved $ref included
    assert spec["openapi"].startswith("3.1")


async def test_every_route_is_described_with_its_schemas(spec: dict[str, Any]) -> None:
    for route in [*ROUTES, METRICS_ROUTE]:
        for method in sorted(route.methods - {"HEAD"}):
            op = spec["paths"].get(route.path, {}).get(method.lower())
            assert op is not None, f"{method} {route.path} is missing from /openapi.json"
            assert op["tags"] != ["Undocumented"], f"{method} {route.path} has no Operation"
            assert op["responses"]["200"]["content"], (method, route.path)
            assert op["responses"]["default"]["content"]["application/json"]["schema"]
            names = re.findall(r"{(\w+)}", route.path)
            assert [p["name"] for p in op.get("parameters", []) if p["in"] == "path"] == names
    described = {(path, m.upper()) for path, ops in spec["paths"].items() for m in ops}
    assert len(described) == sum(len(r.methods - {"HEAD"}) for r in [*ROUTES, METRICS_ROUTE])


async def test_bodies_and_streams_point_at_the_msgspec_types(spec: dict[str, Any]) -> None:
    def ref(op: dict[str, Any], *path: str) -> str:
        node: Any = op
        for key in path:
            node = node[key]
        return node["$ref"].rsplit("/", 1)[1]

    chat = spec["paths"]["/v1/chat/completions"]["post"]
    assert (
        ref(chat, "requestBody", "content", "application/json", "schema") == "ChatCompletionRequest"
    )
    assert ref(chat, "responses", "200", "content", "text/event-stream", "schema") == "ChatCompletionChunk"  # fmt: skip
    messages = spec["paths"]["/v1/messages"]["post"]
    assert (
        ref(messages, "requestBody", "content", "application/json", "schema") == "MessagesRequest"
    )
    assert ref(messages, "responses", "default", "content", "application/json", "schema") == "ErrorResponse"  # fmt: skip
    request = spec["components"]["schemas"]["MessagesRequest"]
    assert "max_tokens" in request["required"]
    assert request["properties"]["temperature"]["anyOf"][0]["maximum"] == 1
    responses = spec["paths"]["/v1/responses"]["post"]
    assert (
        ref(responses, "requestBody", "content", "application/json", "schema") == "ResponsesRequest"
    )
    assert "/docs" in spec["paths"] and "/openapi.json" in spec["paths"]


async def test_the_described_replies_are_what_the_routes_send(client: Any) -> None:
    hi = [{"role": "user", "content": "hi"}]
    checks = [
        (client.post("/v1/chat/completions", json={"model": "chat", "messages": hi}), T.ChatCompletion),
        (client.post("/v1/completions", json={"model": "chat", "prompt": "x"}), T.Completion),
        (client.post("/v1/embeddings", json={"model": "emb", "input": ["a"]}), T.EmbeddingList),
        (client.post("/v1/rerank", json={"model": "rr", "query": "q", "documents": ["a", "bb"]}), T.RerankResponse),
        (client.get("/v1/models"), T.ModelList),
        (client.get("/v1/models/chat"), T.ModelObject),
        (client.get("/v1/models/chat/progress"), T.Progress),
        (client.get("/status"), T.Status),
        (client.get("/v1/cluster/auth"), T.ClusterAuth),
        (client.get("/v1/cluster/version"), T.ClusterVersion),
        (client.get("/v1/models/nope"), T.ErrorBody),
    ]  # fmt: skip
    for call, kind in checks:
        response = await call
        msgspec.convert(response.json(), kind)
    launched = await client.post("/v1/models", json={"model_name": "toy-chat", "model_uid": "x"})
    msgspec.convert(launched.json(), T.Launched)
    msgspec.convert((await client.delete("/v1/models/x")).json(), T.Deleted)


async def test_docs_page_uses_only_local_assets(client: Any) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert links and all(link.startswith("/docs/assets/") for link in links), links
    assert "http://" not in page.text and "https://" not in page.text
    assert '"/openapi.json"' in page.text
    for link in links:
        asset = await client.get(link)
        assert asset.status_code == 200 and len(asset.content) > 500, link
    assert set(ASSETS) >= {link.rsplit("/", 1)[1] for link in links}
    assert (await client.get("/docs/assets/..%2F__init__.py")).status_code == 404
    assert (await client.get("/docs/assets/index.html")).status_code == 404


async def test_without_swagger_ui_the_page_lists_the_routes(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.server import docs

    monkeypatch.setattr(docs, "assets_dir", lambda: None)
    page = await client.get("/docs")
    assert page.status_code == 200 and "<code>/v1/messages</code>" in page.text
    assert "<script" not in page.text and "http" not in page.text.replace(
        "href='/openapi.json'", ""
    )
    assert (await client.get("/docs/assets/swagger-ui.css")).status_code == 404
