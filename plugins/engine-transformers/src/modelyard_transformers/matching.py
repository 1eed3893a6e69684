"""What this plugin declares and which specs it accepts. Pure and cheap: no torch import.

Two engines, named as Xinference names them so its users and xinference-client find them:
"Transformers" for LLMs (chat, completion) and "sentence_transformers" for embedding and rerank
models. They differ in library (sentence-transformers is needed only for the latter), in what
their refusals should say, and in what a user writes as ``model_engine``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

from modelyard.specs import (
    EmbeddingFamily,
    EngineInfo,
    Family,
    Hardware,
    LLMFamily,
    Match,
    ModelSpec,
    RerankFamily,
)

TRANSFORMERS = "Transformers"
SENTENCE_TRANSFORMERS = "sentence_transformers"
ENGINES = (TRANSFORMERS, SENTENCE_TRANSFORMERS)

# Architectures the generic causal-LM loader serves (config.json "architectures").
_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_REQUIREMENTS = {
    TRANSFORMERS: ("torch", "transformers", "accelerate"),
    SENTENCE_TRANSFORMERS: ("torch", "transformers", "sentence_transformers"),
}
_PIP_NAMES = {"sentence_transformers": "sentence-transformers"}


def _version(module: str) -> str | None:
    try:
        return importlib.metadata.version(_PIP_NAMES.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_libraries(engine: str) -> list[str]:
    """Import names of the libraries ``engine`` needs that are not installed (find_spec, no import)."""
    return [name for name in _REQUIREMENTS[engine] if importlib.util.find_spec(name) is None]


def unavailable_reason(engine: str, missing: list[str]) -> str | None:
    if not missing:
        return None
    pips = " ".join(_PIP_NAMES.get(name, name) for name in missing)
    hint = (
        " (without a GPU, first: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        if "torch" in missing
        else ""
    )
    return f"{engine} needs {', '.join(missing)}: pip install {pips}{hint}"


def engine_infos() -> list[EngineInfo]:
    infos = []
    for engine, model_types, abilities, library, preload in (
        (
            TRANSFORMERS,
            ("LLM",),
            ("chat", "generate", "tools"),
            "transformers",
            ("torch", "transformers", "modelyard_transformers.llm"),
        ),
        (
            SENTENCE_TRANSFORMERS,
            ("embedding", "rerank"),
            ("embed", "rerank"),
            "sentence_transformers",
            ("torch", "sentence_transformers", "modelyard_transformers.embedding"),
        ),
    ):
        reason = unavailable_reason(engine, missing_libraries(engine))
        infos.append(
            EngineInfo(
                name=engine,
                model_types=model_types,  # type: ignore[arg-type]
                abilities=abilities,  # type: ignore[arg-type]
                formats=("pytorch",),
                library=_PIP_NAMES.get(library, library),
                library_version=_version(library),
                available=reason is None,
                unavailable_reason=reason,
                preload=preload,
            )
        )
    return infos


def _format_reason(engine: str, spec: ModelSpec, quantization: str) -> str | None:
    if spec.model_format != "pytorch":
        hint = " (use llama.cpp for GGUF)" if spec.model_format == "ggufv2" else ""
        return f"{engine} runs only pytorch-format weights, not {spec.model_format}{hint}"
    if quantization.lower() != "none":
        return (
            f"{engine} runs pytorch weights unquantized (quantization 'none'), not {quantization!r}"
        )
    return None


def match_llm(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware, *, missing: list[str]
) -> Match:
    if not isinstance(family, LLMFamily):
        return Match.no(
            TRANSFORMERS,
            f"{TRANSFORMERS} serves LLMs; {family.model_type} models run on {SENTENCE_TRANSFORMERS}",
        )
    if missing:
        return Match.no(
            TRANSFORMERS, unavailable_reason(TRANSFORMERS, missing) or "missing libraries"
        )
    if reason := _format_reason(TRANSFORMERS, spec, quantization):
        return Match.no(TRANSFORMERS, reason)
    if "vision" in family.model_ability:
        return Match.no(
            TRANSFORMERS,
            f"{TRANSFORMERS} here serves text-only LLMs; {family.model_name} is a vision model",
        )
    if family.architectures and not any(a.endswith(_CAUSAL_SUFFIXES) for a in family.architectures):
        return Match.no(
            TRANSFORMERS,
            f"{TRANSFORMERS} loads causal LMs (*ForCausalLM); {family.model_name} is {', '.join(family.architectures)}",
        )
    return Match.yes(TRANSFORMERS)


def match_sentence(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware, *, missing: list[str]
) -> Match:
    if not isinstance(family, EmbeddingFamily | RerankFamily):
        return Match.no(
            SENTENCE_TRANSFORMERS,
            f"{SENTENCE_TRANSFORMERS} serves embedding and rerank models; LLMs run on {TRANSFORMERS}",
        )
    if missing:
        return Match.no(
            SENTENCE_TRANSFORMERS,
            unavailable_reason(SENTENCE_TRANSFORMERS, missing) or "missing libraries",
        )
    if reason := _format_reason(SENTENCE_TRANSFORMERS, spec, quantization):
        return Match.no(SENTENCE_TRANSFORMERS, reason)
    if isinstance(family, RerankFamily) and family.type not in ("normal", "unknown"):
        return Match.no(
            SENTENCE_TRANSFORMERS,
            f"{SENTENCE_TRANSFORMERS} runs cross-encoder rerankers (type 'normal'); {family.model_name} is type {family.type!r}",
        )
    return Match.yes(SENTENCE_TRANSFORMERS)


def match_all(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    *,
    missing: dict[str, list[str]],
) -> list[Match]:
    """One answer per engine. ``missing`` (engine → absent libraries) is the plugin's state,
    passed in so that this stays a pure function of its arguments."""
    return [
        match_llm(family, spec, quantization, hardware, missing=missing[TRANSFORMERS]),
        match_sentence(
            family, spec, quantization, hardware, missing=missing[SENTENCE_TRANSFORMERS]
        ),
    ]
