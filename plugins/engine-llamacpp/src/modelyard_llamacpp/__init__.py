"""llama.cpp engine for modelyard, through xllamacpp: GGUF chat, completion, embeddings and rerank.

Importing this module is cheap: xllamacpp is only imported in ``load_model`` (in the runner), and
its presence is checked with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard.errors import LaunchError
from modelyard.hookspecs import hookimpl
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

from . import estimate as memory
from .locate import find_gguf

ENGINE = "llama.cpp"
LIBRARY = "xllamacpp"
INSTALL_HINT = "pip install xllamacpp"
log = logging.getLogger(__name__)


def _library_version() -> str | None:
    if importlib.util.find_spec(LIBRARY) is None:
        return None
    try:
        return importlib.metadata.version(LIBRARY)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# Decided once at import: match_engine must be pure, so it reads this instead of probing.
LIBRARY_VERSION = _library_version()


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    register(
        EngineInfo(
            name=ENGINE,
            model_types=("LLM", "embedding", "rerank"),
            abilities=("chat", "generate", "embed", "rerank", "tools", "vision", "reasoning"),
            formats=("ggufv2",),
            library=LIBRARY,
            library_version=LIBRARY_VERSION,
            available=LIBRARY_VERSION is not None,
            unavailable_reason=None if LIBRARY_VERSION else INSTALL_HINT,
            preload=("xllamacpp", "modelyard_llamacpp.loader"),
        )
    )


@hookimpl
def match_engine(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
) -> list[Match]:
    if LIBRARY_VERSION is None:
        return [Match.no(ENGINE, f"xllamacpp is not installed: {INSTALL_HINT}")]
    if spec.model_format != "ggufv2":
        return [
            Match.no(
                ENGINE,
                f"llama.cpp serves GGUF files only (model_format ggufv2), not {spec.model_format}: "
                "choose a ggufv2 spec of this model or another engine",
            )
        ]
    return [Match.yes(ENGINE)]


@hookimpl
def estimate_resources(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate | None:
    from .gguf import GGUFError, read_gguf
    from .settings import plan_from_params

    path = find_gguf(spec, quantization)
    shape = None
    if path is not None:
        try:
            shape = memory.ModelShape.from_gguf(read_gguf(path))
        except GGUFError as exc:
            log.warning("estimating %s from its size: %s", path, exc)
    plan = plan_from_params(family, params, shape)
    if shape is None:
        return memory.estimate_from_size(
            spec.model_size_in_billions, quantization, plan, hardware.accelerators
        )
    given = params.get("n_gpu_layers")
    if isinstance(given, int) and not isinstance(given, bool):
        layers = given
    else:
        layers = memory.gpu_layers(shape, plan, hardware.accelerators)
    return memory.estimate(shape, plan, layers)


@hookimpl
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> Any:
    if LIBRARY_VERSION is None:
        raise LaunchError(f"the llama.cpp engine needs xllamacpp: {INSTALL_HINT}")
    from .loader import load

    return load(family, params, Path(path))
