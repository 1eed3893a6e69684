"""OpenAI inference routes beyond streaming: non-streamed completions, embeddings, rerank, list."""

from __future__ import annotations

import base64
import struct
from typing import Any

import pytest
import server_support as S

pytestmark = pytest.mark.anyio
DOCS = ["short", "a much longer document", "middling doc"]


@pytest.fixture
async def client() -> Any:
    app, manager = S.app_with()
    manager.add("chat")
    manager.add("emb", model_type="embedding")
    manager.add("rr", model_type="rerank")
    async with S.asgi_client(app) as http:
        http.manager = manager
        yield http


async def test_non_streamed_completion(client: Any) -> None:
    response = await client.post(
        "/v1/completions",
        json={"model": "chat", "prompt": "The capital of France is", "max_tokens": 4},
    )
    body = response.json()
    assert response.status_code == 200
    assert (
        body["object"] == "text_completion"
        and body["id"].startswith("cmpl-")
        and body["model"] == "chat"
    )
    assert body["choices"] == [
        {"index": 0, "text": "Paris is", "logprobs": None, "finish_reason": "length"}
    ]
    assert body["usage"]["completion_tokens"] == 2
    assert client.manager.requests[0].max_tokens == 4


async def test_non_streamed_chat_has_usage_and_the_uid_as_model(client: Any) -> None:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]},
    )
    body = response.json()
    assert body["model"] == "chat"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello there!"}
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


async def test_embeddings_openai_shape(client: Any) -> None:
    response = await client.post("/v1/embeddings", json={"model": "emb", "input": ["a", "bbb"]})
    body = response.json()
    assert response.status_code == 200
    assert (
        body["object"] == "list" and body["model"] == "emb" and body["model_replica"] == "emb-rep0"
    )
    assert body["data"] == [
        {"index": 0, "object": "embedding", "embedding": [0.5, -1.0, 1.0]},
        {"index": 1, "object": "embedding", "embedding": [0.5, -1.0, 3.0]},
    ]
    assert body["usage"] == {"prompt_tokens": 4, "total_tokens": 4}


async def test_embeddings_base64_is_little_endian_float32(client: Any) -> None:
    response = await client.post(
        "/v1/embeddings", json={"model": "emb", "input": "abcd", "encoding_format": "base64"}
    )
    encoded = response.json()["data"][0]["embedding"]
    assert struct.unpack("<3f", base64.b64decode(encoded)) == (0.5, -1.0, 4.0)


async def test_embeddings_accept_token_ids_and_reject_mixed_lists(client: Any) -> None:
    ok = await client.post("/v1/embeddings", json={"model": "emb", "input": [[1, 2], [3]]})
    assert ok.status_code == 200 and len(ok.json()["data"]) == 2
    mixed = await client.post("/v1/embeddings", json={"model": "emb", "input": ["a", 1]})
    assert mixed.status_code == 400 and "input" in mixed.json()["detail"]
    empty = await client.post("/v1/embeddings", json={"model": "emb", "input": []})
    assert empty.status_code == 400 and "$.input" in empty.json()["detail"]


async def test_embeddings_name_the_inputs_the_engine_truncated(client: Any) -> None:
    response = await client.post(
        "/v1/embeddings", json={"model": "emb", "input": ["short", "much longer"], "truncate": True}
    )
    assert response.status_code == 200
    assert response.json()["truncated_inputs"] == [1]
    untouched = await client.post("/v1/embeddings", json={"model": "emb", "input": ["short"]})
    assert "truncated_inputs" not in untouched.json()


async def test_rerank_warns_about_documents_cut_to_the_model_limit(client: Any) -> None:
    body = {"model": "rr", "query": "q", "documents": ["a", "LONG document"]}
    response = await client.post("/v1/rerank", json=body)
    assert response.status_code == 200
    assert response.json()["meta"]["warnings"] == [
        "documents [1] were cut to the model's maximum length"
    ]


async def test_rerank_sorts_cuts_and_attaches_documents(client: Any) -> None:
    body = {
        "model": "rr",
        "query": "q",
        "documents": DOCS,
        "top_n": 2,
        "return_documents": True,
        "return_len": True,
    }
    response = await client.post("/v1/rerank", json=body)
    result = response.json()
    assert response.status_code == 200
    assert [r["index"] for r in result["results"]] == [1, 2]
    assert [r["document"] for r in result["results"]] == [{"text": DOCS[1]}, {"text": DOCS[2]}]
    assert result["results"][0]["relevance_score"] > result["results"][1]["relevance_score"]
    assert result["meta"] == {
        "api_version": None,
        "billed_units": None,
        "tokens": {"input_tokens": 11, "output_tokens": 0},
        "warnings": None,
    }
    assert isinstance(result["id"], str) and result["id"]


async def test_rerank_as_xinference_client_sends_it(client: Any) -> None:
    """Nulls for every optional field plus the extra kwargs as a JSON string (XINFERENCE_API §5)."""
    body = {
        "model": "rr", "query": "q", "documents": DOCS, "top_n": None, "max_chunks_per_doc": None,
        "return_documents": None, "return_len": None, "kwargs": "{}",
    }  # fmt: skip
    result = (await client.post("/v1/rerank", json=body)).json()
    assert [r["index"] for r in result["results"]] == [1, 2, 0]
    assert all("document" not in r for r in result["results"])
    assert result["meta"]["tokens"] is None


async def test_rerank_accepts_document_objects(client: Any) -> None:
    body = {
        "model": "rr",
        "query": "q",
        "documents": [{"text": "x"}, "yy"],
        "return_documents": True,
    }
    result = (await client.post("/v1/rerank", json=body)).json()
    assert [r["document"]["text"] for r in result["results"]] == ["yy", "x"]


async def test_the_wrong_kind_of_model_is_a_400(client: Any) -> None:
    response = await client.post("/v1/embeddings", json={"model": "chat", "input": "x"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported"
    response = await client.post(
        "/v1/rerank", json={"model": "nope", "query": "q", "documents": ["a"]}
    )
    assert response.status_code == 404 and "nope" in response.json()["detail"]


async def test_model_list_is_openai_and_xinference_shaped(client: Any) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    items = {item["id"]: item for item in body["data"]}
    assert set(items) == {"chat", "emb", "rr"}
    chat = items["chat"]
    assert (chat["object"], chat["owned_by"], chat["created"]) == (
        "model",
        "modelyard",
        1_700_000_000,
    )
    assert (
        chat["model_type"] == "LLM" and "chat" in chat["model_ability"] and chat["state"] == "ready"
    )
    assert items["emb"]["dimensions"] == 3 and items["emb"]["model_ability"] == ["embed"]
    assert items["rr"]["type"] == "normal"


@pytest.mark.parametrize("path", ["/v1/rerank", "/rerank", "/v2/rerank"])
async def test_rerank_answers_on_the_jina_and_cohere_paths(client: Any, path: str) -> None:
    body = {"model": "rr", "query": "q", "documents": DOCS, "top_n": 2}
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["index"] for r in result["results"]] == [1, 2]
    assert all(set(r) == {"index", "relevance_score"} for r in result["results"])
    assert result["usage"]["total_tokens"] > 0 and result["model"] == "rr"


@pytest.mark.parametrize(("flag", "wanted"), [("true", True), ("False", False), (True, True)])
async def test_rerank_takes_string_booleans_as_xinference_does(
    client: Any, flag: object, wanted: bool
) -> None:
    body = {"model": "rr", "query": "q", "documents": DOCS, "return_documents": flag}
    result = (await client.post("/v1/rerank", json=body)).json()
    assert all(("document" in r) is wanted for r in result["results"])


async def test_rerank_refuses_a_string_that_is_no_boolean(client: Any) -> None:
    body = {"model": "rr", "query": "q", "documents": DOCS, "return_documents": "maybe"}
    response = await client.post("/v1/rerank", json=body)
    assert response.status_code == 400
    assert "return_documents" in response.json()["error"]["message"]


async def test_the_request_id_reaches_the_manager_and_comes_back(client: Any) -> None:
    hello = [{"role": "user", "content": "hi"}]
    sent = await client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": hello},
        headers={"X-Request-Id": "from-header"},
    )
    in_body = await client.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": hello, "stream": True, "request_id": "from-body"},
    )
    made = await client.post("/v1/chat/completions", json={"model": "chat", "messages": hello})
    assert sent.headers["x-request-id"] == "from-header"
    assert in_body.headers["x-request-id"] == "from-body"
    assert len(made.headers["x-request-id"]) == 32  # a fresh uuid, for an abort later
    assert client.manager.request_ids == ["from-header", "from-body", made.headers["x-request-id"]]
    aborted = await client.post(
        "/v1/models/chat/requests/from-body/abort", json={"block_duration": 30}
    )
    assert (aborted.status_code, aborted.json()) == (200, {"msg": "DONE"})
    assert client.manager.aborted == ["from-body"]
    unknown = await client.post("/v1/models/ghost/requests/x/abort", json={})
    assert unknown.status_code == 404


async def test_keep_alive_that_is_not_a_duration_is_a_400_on_every_route(client: Any) -> None:
    bodies = {
        "/v1/chat/completions": {"model": "chat", "messages": [{"role": "user", "content": "x"}]},
        "/v1/completions": {"model": "chat", "prompt": "x"},
        "/v1/embeddings": {"model": "emb", "input": "x"},
        "/v1/rerank": {"model": "rr", "query": "x", "documents": ["a"]},
    }
    for path, body in bodies.items():
        response = await client.post(path, json={**body, "keep_alive": "a while"})
        assert response.status_code == 400, path
        assert "keep_alive must be a duration" in response.json()["error"]["message"]
        assert response.json()["error"]["param"] == "keep_alive"
