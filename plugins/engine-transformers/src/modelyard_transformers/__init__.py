"""modelyard engine plugin: LLMs on transformers ("Transformers"), embedding and rerank models
on sentence-transformers ("sentence_transformers").

Importing this module is cheap: torch, transformers and sentence-transformers are imported only
when a model is loaded, in the runner process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.engine import LoadedModel
from modelyard.errors import LaunchError
from modelyard.hookspecs import hookimpl
from modelyard.specs import (
    EngineInfo,
    Estimate,
    Family,
    Hardware,
    LLMFamily,
    Match,
    ModelSpec,
    RerankFamily,
)

from .matching import (
    ENGINES,
    SENTENCE_TRANSFORMERS,
    TRANSFORMERS,
    engine_infos,
    match_all,
    missing_libraries,
)

__all__ = ["SENTENCE_TRANSFORMERS", "TRANSFORMERS"]

# Which libraries are installed is this plugin's state, looked up once (find_spec, no import).
_MISSING = {engine: missing_libraries(engine) for engine in ENGINES}


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    for info in engine_infos():
        register(info)


@hookimpl
def match_engine(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
) -> list[Match]:
    return match_all(family, spec, quantization, hardware, missing=_MISSING)


@hookimpl
def estimate_resources(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate | None:
    from .estimate import estimate

    return estimate(family, spec, params, hardware)


@hookimpl
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> LoadedModel | None:
    wanted = TRANSFORMERS if isinstance(family, LLMFamily) else SENTENCE_TRANSFORMERS
    if engine != wanted:  # the core passes the name as registered
        raise LaunchError(
            f"{family.model_name} is a {family.model_type} model: launch it with model_engine {wanted!r}"
        )
    if isinstance(family, LLMFamily):
        from .llm import load_llm

        return load_llm(family, params, path)
    if isinstance(family, RerankFamily):
        from .rerank import load_reranker

        return load_reranker(family, params, path)
    from .embedding import load_embedder

    return load_embedder(family, params, path)
