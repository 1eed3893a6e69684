"""vLLM's pooling runner for real: all-MiniLM-L6-v2 (BertModel) embeddings on the CPU build."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from anyio.from_thread import BlockingPortal
from modelyard.errors import InvalidRequest
from modelyard.schemas import ChatCompletionRequest, EmbeddingRequest
from modelyard.specs import EmbeddingFamily, ModelSource, ModelSpec
from modelyard_vllm import load_model
from modelyard_vllm.model import VllmModel

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; run plugins/engine-vllm/scripts/test.sh (it builds .venv-vllm)",
    ),
]


@pytest.fixture(scope="module")
def model(portal: BlockingPortal, minilm_path: Path) -> Iterator[VllmModel]:
    spec = ModelSpec("pytorch", 0.022, ("none",), (ModelSource("local", str(minilm_path)),))
    family = EmbeddingFamily(
        model_name="all-minilm-l6-v2",
        model_specs=(spec,),
        dimensions=384,
        max_tokens=256,
        architectures=("BertModel",),
    )

    def load() -> Any:
        return load_model(
            engine="vLLM",
            family=family,
            spec=spec,
            quantization="none",
            params={},
            path=minilm_path,
        )

    loaded = portal.call(anyio.to_thread.run_sync, load)
    try:
        yield loaded
    finally:
        portal.call(loaded.close)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(
        sum(x * x for x in a) * sum(y * y for y in b)
    )


def test_embeddings_have_the_models_dimensions_and_meaning(
    portal: BlockingPortal, model: VllmModel
) -> None:
    assert model.abilities == ("embed",) and model.context_length == 256
    texts = [
        "A cat sits on the mat.",
        "A kitten is sitting on a rug.",
        "Stock markets fell sharply today.",
    ]
    result = portal.call(model.embed, EmbeddingRequest(model="m", input=texts))
    vectors = [item["embedding"] for item in sorted(result["data"], key=lambda d: d["index"])]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
    assert (
        result["usage"]["prompt_tokens"] > 10
        and result["usage"]["total_tokens"] == result["usage"]["prompt_tokens"]
    )


def test_an_over_long_input_is_a_400_unless_truncation_is_asked(
    portal: BlockingPortal, model: VllmModel
) -> None:
    long_text = "word " * 600
    with pytest.raises(InvalidRequest):
        portal.call(model.embed, EmbeddingRequest(model="m", input=long_text))
    result = portal.call(model.embed, EmbeddingRequest(model="m", input=long_text, truncate=True))
    assert len(result["data"][0]["embedding"]) == 384 and result["usage"]["prompt_tokens"] <= 256


def test_an_embedding_model_cannot_chat(portal: BlockingPortal, model: VllmModel) -> None:
    request = msgspec.convert(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, ChatCompletionRequest
    )

    async def first() -> Any:
        return [chunk async for chunk in model.chat(request)]

    with pytest.raises(InvalidRequest, match="embeddings"):
        portal.call(first)
