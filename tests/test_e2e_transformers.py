"""modelyard serve → transformers plugin: embeddings, rerank and chat on real small models.

The models come from scripts/prepare_models.py (converted from packaged weights into .models/).
The cross-encoder is built locally from MiniLM's weights with an untrained classification head: it
exercises the real loading and scoring path, but its scores carry no meaning.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from local_families import smollm2_family

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS", Path(__file__).parents[1] / ".models"))

if importlib.util.find_spec("modelyard_transformers") is None:
    pytest.skip("needs the transformers plugin (scripts/test installs it)", allow_module_level=True)
if not (MODELS / "smollm2-135m-instruct").is_dir():
    pytest.skip(
        f"test models not prepared in {MODELS} (run scripts/prepare_models.py)",
        allow_module_level=True,
    )


def _register(server: Server, model_type: str, family: dict) -> None:
    with server.client() as http:
        response = http.post(
            f"/v1/model_registrations/{model_type}",
            json={"model": json.dumps(family), "persist": False},
        )
    assert response.status_code == 200, response.text


def test_builtin_minilm_embeds_similar_sentences_closer(server: Server, oai: openai.OpenAI) -> None:
    uid = server.launch(model_name="all-MiniLM-L6-v2", model_type="embedding", model_uid="minilm")
    try:
        texts = [
            "A man is playing a guitar.",
            "Someone plays the guitar.",
            "The stock market fell today.",
        ]
        reply = oai.embeddings.create(model=uid, input=texts)
        vectors = [item.embedding for item in reply.data]
        assert [len(v) for v in vectors] == [384, 384, 384]

        def cosine(a: list[float], b: list[float]) -> float:
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)

        assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
        assert reply.usage.prompt_tokens > len(texts)
    finally:
        server.terminate(uid)


def test_concurrent_embedding_requests_each_get_their_own_vector_and_usage(
    server: Server,
) -> None:
    """Requests sent together are encoded in shared batches; each still gets its own sentence's
    vector (as sentence-transformers gives it for that sentence) and its own token count."""
    torch = pytest.importorskip("torch", reason="the reference vectors come from torch")
    from sentence_transformers import SentenceTransformer

    sentences = [f"Sentence {i} is about {topic}." for i, topic in enumerate(TOPICS)]
    uid = server.launch(model_name="all-MiniLM-L6-v2", model_type="embedding", model_uid="minilm-c")
    try:

        async def send_all() -> list[openai.types.CreateEmbeddingResponse]:
            async with openai.AsyncOpenAI(
                base_url=f"{server.url}/v1", api_key="unused", max_retries=0
            ) as client:
                return await asyncio.gather(
                    *(client.embeddings.create(model=uid, input=text) for text in sentences)
                )

        replies = asyncio.run(send_all())
    finally:
        server.terminate(uid)
    torch.set_num_threads(1)
    reference = SentenceTransformer(
        str(MODELS / "all-minilm-l6-v2"), device="cpu", local_files_only=True
    )
    expected = reference.encode(sentences, convert_to_numpy=True, show_progress_bar=False)
    tokens = [len(ids) for ids in reference.tokenizer(sentences)["input_ids"]]
    for i, reply in enumerate(replies):
        vector = reply.data[0].embedding
        assert max(abs(a - b) for a, b in zip(vector, expected[i], strict=True)) < 1e-4, i
        assert reply.usage.prompt_tokens == tokens[i]
    assert len({tuple(reply.data[0].embedding) for reply in replies}) == len(sentences)


TOPICS = [
    "the sea", "a violin", "tax law", "volcanoes", "bread", "chess", "the moon", "rain",
    "trains", "bees", "glass", "football", "winter", "printing", "rivers", "salt",
]  # fmt: skip


@pytest.fixture(scope="module")
def cross_encoder(
    server: Server, cross_encoder_family: Callable[[str], dict[str, object]]
) -> Iterator[str]:
    """The local MiniLM cross-encoder, registered as a custom rerank model and launched."""
    _register(server, "rerank", cross_encoder_family("local-minilm-cross-encoder"))
    uid = server.launch(
        model_name="local-minilm-cross-encoder", model_type="rerank", model_uid="ce"
    )
    yield uid
    server.terminate(uid)


RERANK_DOCUMENTS = [
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "France is in Europe.",
]


def test_custom_cross_encoder_reranks_in_xinference_shape(
    server: Server, cross_encoder: str
) -> None:
    documents = RERANK_DOCUMENTS
    with server.client() as http:
        response = http.post(
            "/v1/rerank",
            json={
                "model": cross_encoder,
                "query": "capital of France",
                "documents": documents,
                "top_n": 2,
                "return_documents": True,
            },
        )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    assert all(r["document"]["text"] == documents[r["index"]] for r in results)

    with server.client() as http:
        empty = http.post(
            "/v1/rerank", json={"model": cross_encoder, "query": "q", "documents": []}
        )
    assert empty.status_code == 400
    assert "documents" in empty.json()["error"]["message"]


def test_litellm_cohere_rerank_provider_works_unmodified(
    server: Server, cross_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm's cohere provider posts Cohere v2's body to {api_base}/v2/rerank."""
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of its price list
    litellm = pytest.importorskip("litellm")
    reply = litellm.rerank(
        model=f"cohere/{cross_encoder}",
        query="capital of France",
        documents=RERANK_DOCUMENTS,
        top_n=2,
        api_base=server.url,
        api_key="unused",
    )
    results = reply.results
    assert len(results) == 2
    assert {r["index"] for r in results} <= {0, 1, 2}
    scores = [r["relevance_score"] for r in results]
    assert scores == sorted(scores, reverse=True)
    with server.client() as http:
        direct = http.post(
            "/v1/rerank",
            json={
                "model": cross_encoder,
                "query": "capital of France",
                "documents": RERANK_DOCUMENTS,
            },
        ).json()
    assert [r["index"] for r in results] == [r["index"] for r in direct["results"][:2]]


def test_custom_safetensors_smollm2_chats_on_transformers(
    server: Server, oai: openai.OpenAI
) -> None:
    folder = MODELS / "smollm2-135m-instruct"
    _register(server, "LLM", smollm2_family("local-smollm2-safetensors", folder))
    uid = server.launch(
        model_name="local-smollm2-safetensors", model_engine="Transformers", model_uid="hf-smol"
    )
    try:
        reply = oai.chat.completions.create(
            model=uid,
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
            ],
            max_tokens=12,
            temperature=0,
        )
        assert "Paris" in reply.choices[0].message.content
        assert reply.usage.completion_tokens > 0
    finally:
        server.terminate(uid)


def test_registration_with_a_missing_local_path_is_refused(server: Server) -> None:
    with httpx.Client(base_url=server.url) as http:
        response = http.post(
            "/v1/model_registrations/embedding",
            json={
                "model": json.dumps(
                    {
                        "model_name": "ghost-embedder",
                        "model_type": "embedding",
                        "dimensions": 8,
                        "max_tokens": 16,
                        "model_specs": [
                            {
                                "model_format": "pytorch",
                                "model_size_in_billions": 0.01,
                                "quantizations": ["none"],
                                "sources": [{"hub": "local", "model_id": str(MODELS / "ghost")}],
                            }
                        ],
                    }
                ),
                "persist": True,
            },
        )
        assert response.status_code == 400
        # Inside a model root (the server allows MODELS), so the answer says it is missing.
        assert str(MODELS / "ghost") in response.json()["detail"]
        listed = http.get("/v1/model_registrations/embedding").json()
    assert all(item["model_name"] != "ghost-embedder" for item in listed)
