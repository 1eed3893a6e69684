"""Embeddings on all-MiniLM-L6-v2 (the sentence-transformers folder shipped in a PyPI package)."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from typing import Any

import pytest
from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import EmbeddingRequest


def embed(model: Any, texts: str | list[Any], **kw: Any) -> dict[str, Any]:
    return asyncio.run(model.embed(EmbeddingRequest(model="minilm", input=texts, **kw)))


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_similar_sentences_score_higher_than_unrelated(minilm: Any) -> None:
    reply = embed(
        minilm,
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."],
    )
    a, b, c = (item["embedding"] for item in reply["data"])
    assert [item["index"] for item in reply["data"]] == [0, 1, 2]
    assert len(a) == 384
    assert cosine(a, b) > cosine(a, c) + 0.3


def test_usage_counts_the_models_tokens(minilm: Any) -> None:
    texts = ["hello world", "a somewhat longer sentence to embed here"]
    reply = embed(minilm, texts)
    expected = sum(
        len(ids) for ids in minilm.model.tokenizer(texts)["input_ids"]
    )  # [CLS] and [SEP] included
    assert reply["usage"] == {"prompt_tokens": expected, "total_tokens": expected}


def test_concurrent_single_requests_are_encoded_together(minilm: Any) -> None:
    before = Counter(minilm.batcher.stats.requests)
    sentences = [f"sentence number {i} about topic {i % 3}" for i in range(16)]

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            *(minilm.embed(EmbeddingRequest(model="m", input=s)) for s in sentences)
        )

    replies = asyncio.run(main())
    batches = Counter(minilm.batcher.stats.requests) - before
    assert sum(size * count for size, count in batches.items()) == 16
    assert max(batches) > 1, f"every request was encoded alone: {dict(batches)}"
    # Each caller gets its own vector back, not a neighbour's.
    alone = embed(minilm, sentences[5])["data"][0]["embedding"]
    assert cosine(replies[5]["data"][0]["embedding"], alone) > 0.9999


def test_too_long_input_is_refused_unless_truncation_is_asked(minilm: Any) -> None:
    long_text = "word " * 400
    with pytest.raises(
        InvalidRequest, match=r"input\[1\] has \d+ tokens, more than this model's maximum of 256"
    ) as info:
        embed(minilm, ["short", long_text])
    assert "truncate" in info.value.message and info.value.param == "input[1]"
    reply = embed(minilm, ["short", long_text], truncate=True)
    assert reply["truncated_inputs"] == [1]
    assert (
        reply["usage"]["prompt_tokens"] == len(minilm.model.tokenizer("short")["input_ids"]) + 256
    )


def test_empty_and_non_string_inputs_are_refused(minilm: Any) -> None:
    with pytest.raises(InvalidRequest, match="input is empty"):
        embed(minilm, [])
    with pytest.raises(Unsupported, match="token ids"):
        embed(minilm, [[101, 102]])
    with pytest.raises(Unsupported, match="384 dimensions"):
        embed(minilm, "hi", dimensions=128)
