"""The real client libraries against the app on a real uvicorn (fake manager behind it):
xinference-client's RESTfulClient for management and handles, and the official openai SDK."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import server_support as S
from xinference_client import RESTfulClient


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Any]]:
    app, manager = S.app_with()
    with S.running_server(app) as url:
        yield url, manager


@pytest.fixture
def client(served: tuple[str, Any]) -> Iterator[RESTfulClient]:
    client = RESTfulClient(served[0])
    yield client
    client.close()  # its requests.Session holds sockets open until closed


def test_xinference_client_lifecycle_and_handles(
    served: tuple[str, Any], client: RESTfulClient
) -> None:
    _, manager = served
    uid = client.launch_model(
        model_name="toy-chat",
        model_engine="fake",
        model_size_in_billions="0_135",
        model_uid="xc",
        n_ctx=1024,
    )
    assert uid == "xc"
    assert manager.launches[-1][0].params == {"n_ctx": 1024}
    assert "xc" in client.list_models()
    assert client.describe_model("xc")["model_engine"] == "fake"
    model = client.get_model("xc")
    reply = model.chat(
        messages=[{"role": "user", "content": "Say hello."}],
        generate_config={"max_tokens": 8, "temperature": 0},
    )
    assert reply["choices"][0]["message"]["content"] == "Hello there!"
    chunks = list(
        model.chat(
            messages=[{"role": "user", "content": "Hi"}],
            generate_config={"max_tokens": 4, "stream": True},
        )
    )
    assert (
        "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        == "Hello there!"
    )
    generated = model.generate("The capital of France is", generate_config={"max_tokens": 3})
    assert generated["choices"][0]["text"] == "Paris is"
    assert client.get_launch_model_progress("xc")["progress"] == 1.0
    client.terminate_model("xc")
    assert "xc" not in client.list_models()
    with pytest.raises(RuntimeError, match="xc"):
        client.describe_model("xc")


def test_xinference_client_embedding_rerank_and_registrations(client: RESTfulClient) -> None:
    client.launch_model(model_name="toy-embed", model_type="embedding", model_uid="xe")
    client.launch_model(model_name="toy-rerank", model_type="rerank", model_uid="xr")
    embedded = client.get_model("xe").create_embedding(["one", "three"])
    assert [d["embedding"][2] for d in embedded["data"]] == [3.0, 5.0]
    ranked = client.get_model("xr").rerank(["a", "ccc", "bb"], "q", top_n=2, return_documents=True)
    assert [(r["index"], r["document"]["text"]) for r in ranked["results"]] == [
        (1, "ccc"),
        (2, "bb"),
    ]
    client.terminate_model("xe")
    client.terminate_model("xr")
    with pytest.raises(RuntimeError, match="nope"):
        client.launch_model(model_name="nope")
    with pytest.raises(RuntimeError, match="Unsupported model type"):
        client.list_model_registrations("image")


def test_openai_sdk_chat_stream_embeddings_and_errors(served: tuple[str, Any]) -> None:
    url, manager = served
    manager.add("oai")
    manager.add("oai-emb", model_type="embedding")
    sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    try:
        reply = sdk.chat.completions.create(
            model="oai", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.model == "oai" and reply.choices[0].message.content == "Hello there!"
        assert reply.usage is not None and reply.usage.total_tokens == 8
        chunks = list(
            sdk.chat.completions.create(
                model="oai",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        assert all(c.usage is None for c in chunks[:-1])
        # The SDK asks for base64 by default and decodes it.
        embedding = sdk.embeddings.create(model="oai-emb", input="abcd")
        assert embedding.data[0].embedding == [0.5, -1.0, 4.0]
        assert sdk.models.retrieve("oai").id == "oai"
        with pytest.raises(openai.NotFoundError, match="no-such-model"):
            sdk.chat.completions.create(
                model="no-such-model", messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.BadRequestError, match="temperature"):
            sdk.chat.completions.create(
                model="oai", messages=[{"role": "user", "content": "hi"}], temperature=5
            )
    finally:
        sdk.close()
        manager.records.pop("oai", None)
        manager.records.pop("oai-emb", None)
