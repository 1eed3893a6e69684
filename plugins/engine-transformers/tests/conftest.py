"""Real small models for the engine tests, prepared by scripts/prepare_models.py into .models/.

Each model is loaded once per session with one torch thread (2 shared cores: more threads make
everything slower) and closed at the end. Tests skip, saying why, when a library or a prepared
model is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from modelyard.catalog import get_catalog
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSource, ModelSpec, RerankFamily

MODELS = Path(
    os.environ.get("MODELYARD_TEST_MODELS") or Path(__file__).resolve().parents[3] / ".models"
)
PREPARE = "run `python scripts/prepare_models.py` from the repository root"


def spec_at(path: Path, size: float) -> ModelSpec:
    return ModelSpec(
        model_format="pytorch",
        model_size_in_billions=size,
        quantizations=("none",),
        sources=(ModelSource(hub="local", model_id=str(path)),),
    )


def smollm2_family(context_length: int = 2048) -> LLMFamily:
    # The catalog's chat template and tool parser (the template shipped with SmolLM2 has no tools).
    catalog = get_catalog().get("smollm2-instruct", "LLM")
    assert isinstance(catalog, LLMFamily)
    return LLMFamily(
        model_name="smollm2-135m-instruct",
        model_ability=("chat", "generate", "tools"),
        context_length=context_length,
        architectures=("LlamaForCausalLM",),
        chat_template=catalog.chat_template,
        tool_parser=catalog.tool_parser,
        model_specs=(spec_at(MODELS / "smollm2-135m-instruct", 0.135),),
    )


def minilm_family() -> EmbeddingFamily:
    return EmbeddingFamily(
        model_name="all-MiniLM-L6-v2",
        dimensions=384,
        max_tokens=256,
        model_specs=(spec_at(MODELS / "all-minilm-l6-v2", 0.022),),
    )


def cross_encoder_family() -> RerankFamily:
    return RerankFamily(
        model_name="minilm-cross-encoder",
        max_tokens=512,
        model_specs=(spec_at(MODELS / "minilm-cross-encoder", 0.022),),
    )


def _require(folder: str, *modules: str) -> Path:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install modelyard-engine-transformers)")
    path = MODELS / folder
    if not path.is_dir():
        pytest.skip(f"test model {folder} is not prepared in {MODELS}: {PREPARE}")
    return path


def _load(engine: str, family: Any, path: Path, params: dict[str, Any]) -> Iterator[Any]:
    from modelyard_transformers import load_model

    model = load_model(
        engine=engine,
        family=family,
        spec=family.model_specs[0],
        quantization="none",
        params=params,
        path=path,
    )
    try:
        yield model
    finally:
        asyncio.run(model.close())


@pytest.fixture(scope="session")
def smollm2() -> Iterator[Any]:
    path = _require("smollm2-135m-instruct", "torch", "transformers")
    yield from _load("Transformers", smollm2_family(), path, {"n_threads": 1, "max_num_seqs": 4})


@pytest.fixture(scope="session")
def smollm2_tokenizer() -> Any:
    path = _require("smollm2-135m-instruct", "transformers")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


@pytest.fixture(scope="session")
def minilm() -> Iterator[Any]:
    path = _require("all-minilm-l6-v2", "torch", "sentence_transformers")
    yield from _load("sentence_transformers", minilm_family(), path, {"n_threads": 1})


@pytest.fixture(scope="session")
def cross_encoder() -> Iterator[Any]:
    path = _require("minilm-cross-encoder", "torch", "sentence_transformers")
    yield from _load("sentence_transformers", cross_encoder_family(), path, {"n_threads": 1})
