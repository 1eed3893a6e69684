"""Rerank through sentence-transformers' CrossEncoder.

No reranker can be downloaded here, so the model is all-MiniLM-L6-v2's encoder with a seeded,
untrained one-label head (scripts/prepare_models.py): it loads and scores exactly like a real
cross-encoder, but its scores carry no meaning. The tests check the path and the shapes, never
which document "should" win.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from modelyard.errors import InvalidRequest
from modelyard.schemas import RerankRequest

DOCS = [
    "Paris is the capital of France.",
    "Bananas are yellow.",
    "France is in Europe.",
    "Cats sleep a lot.",
]


def rerank(model: Any, documents: list[Any], query: str = "capital of France") -> dict[str, Any]:
    return asyncio.run(model.rerank(RerankRequest(model="ce", query=query, documents=documents)))


def test_one_score_per_document_in_request_order(cross_encoder: Any) -> None:
    reply = rerank(cross_encoder, DOCS)
    assert [r["index"] for r in reply["results"]] == [0, 1, 2, 3]
    direct = cross_encoder.model.predict([("capital of France", d) for d in DOCS])
    assert [r["relevance_score"] for r in reply["results"]] == pytest.approx(
        [float(s) for s in direct], abs=1e-5
    )
    expected = sum(
        len(ids)
        for ids in cross_encoder.model.tokenizer(["capital of France"] * 4, DOCS)["input_ids"]
    )
    assert reply["usage"] == {"input_tokens": expected}


def test_concurrent_rerank_requests_share_a_batch(cross_encoder: Any) -> None:
    before = Counter(cross_encoder.batcher.stats.requests)

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(
                cross_encoder.rerank(RerankRequest(model="ce", query=f"query {i}", documents=DOCS))
                for i in range(4)
            )
        )

    replies = asyncio.run(main())
    assert all(len(r["results"]) == 4 for r in replies)
    batches = Counter(cross_encoder.batcher.stats.requests) - before
    assert max(batches) > 1, dict(batches)


def test_long_documents_are_cut_or_refused_as_the_request_asks(cross_encoder: Any) -> None:
    long_document = "word " * (cross_encoder.max_length + 50)
    documents = ["short document", long_document]
    cut = asyncio.run(
        cross_encoder.rerank(RerankRequest(model="ce", query="q", documents=documents))
    )
    assert cut["truncated_documents"] == [1]
    assert len(cut["results"]) == 2
    with pytest.raises(
        InvalidRequest, match=r"documents \[1\].*maximum of \d+ tokens.*truncate=true"
    ):
        asyncio.run(
            cross_encoder.rerank(
                RerankRequest(model="ce", query="q", documents=documents, truncate=False)
            )
        )


def test_no_documents_is_a_clear_400(cross_encoder: Any) -> None:
    with pytest.raises(InvalidRequest, match="documents is empty") as info:
        rerank(cross_encoder, [])
    assert info.value.status == 400 and info.value.param == "documents"


@dataclass
class _Record:
    uid: str
    state: str = "ready"
    progress: float = 1.0
    error: str | None = None


class _OneModel:
    """Just enough of the server's Manager to put one loaded model behind the real routes."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get(self, uid: str) -> _Record:
        return _Record(uid)

    async def ensure_ready(self, uid: str) -> _Record:
        return _Record(uid)

    async def rerank(
        self, uid: str, request: RerankRequest, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self.model.rerank(request)

    async def aclose(self) -> None:
        pass


def test_core_sorts_cuts_top_n_and_attaches_documents(cross_encoder: Any) -> None:
    pytest.importorskip("starlette", reason="the core server needs starlette")
    from modelyard.server import create_app

    scores = [r["relevance_score"] for r in rerank(cross_encoder, DOCS)["results"]]
    best_two = sorted(range(4), key=lambda i: scores[i], reverse=True)[:2]

    async def main() -> httpx.Response:
        app = create_app(_OneModel(cross_encoder))  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as http:
            return await http.post(
                "/v1/rerank",
                json={
                    "model": "ce",
                    "query": "capital of France",
                    "documents": DOCS,
                    "top_n": 2,
                    "return_documents": True,
                },
            )

    response = asyncio.run(main())
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == best_two
    assert [r["document"]["text"] for r in results] == [DOCS[i] for i in best_two]
