"""modelyard's example engine: the template for a third-party engine plugin.

It serves one toy model, ``echo``: chat streams the last user message back word by word, and an
``echo-embedding`` model returns small deterministic vectors. Nothing here needs weights, so the
plugin system can be tested for real, end to end, on any machine.

This module is the plugin: the ``modelyard.engines`` entry point names it, and modelyard registers
it with pluggy. Each ``@hookimpl`` below implements one hook of ``modelyard.hookspecs``; a function
whose name matches no hook is refused when the plugin loads, so typos fail loudly.

Keep this module cheap to import: a real engine imports its library (torch, vllm, xllamacpp...)
inside ``load_model`` only, so that ``modelyard --help`` and ``modelyard plugins`` stay fast and a
missing library is reported rather than crashing the import.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from modelyard import hookimpl
from modelyard.engine import LoadedModel
from modelyard.errors import InvalidRequest
from modelyard.specs import (
    EmbeddingFamily,
    EngineInfo,
    Estimate,
    Family,
    Hardware,
    LLMFamily,
    Match,
    ModelSource,
    ModelSpec,
    RerankFamily,
)

ENGINE = "example"
ARCHITECTURE = "EchoModel"
# Engine parameters this engine understands; anything else in a launch is refused by name.
PARAMS: dict[str, type] = {"context_length": int, "dimensions": int}

try:
    __version__ = version("modelyard-example-engine")
except PackageNotFoundError:  # registered from a source tree (MODELYARD_PLUGIN_MODULES)
    __version__ = "0+unknown"


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    """Declare the engine. A real plugin checks its library here WITHOUT importing it
    (``importlib.util.find_spec``) and registers ``available=False`` with install advice if absent."""
    # The echo engine's "library" is anyio, which modelyard itself needs: always present.
    available = importlib.util.find_spec("anyio") is not None
    register(
        EngineInfo(
            name=ENGINE,
            model_types=("LLM", "embedding"),
            abilities=("chat", "generate", "embed"),
            formats=("pytorch",),
            library="modelyard-example-engine",
            library_version=__version__,
            available=available,
            unavailable_reason=None if available else "anyio is missing: pip install anyio",
        )
    )


@hookimpl
def register_families(register: Callable[[Family], None]) -> None:
    """Contribute the toy models to the catalog. Their source is this package itself: the
    ``package`` hub returns its directory, so launching them needs no download."""
    source = (ModelSource(hub="package", model_id="modelyard_example_engine"),)
    spec = ModelSpec(
        model_format="pytorch",
        model_size_in_billions=0.001,
        quantizations=("none",),
        sources=source,
    )
    register(
        LLMFamily(
            model_name="echo",
            model_description="Toy model of modelyard's example engine: repeats the last user message.",
            model_ability=("chat", "generate"),
            context_length=2048,
            model_specs=(spec,),
            architectures=(ARCHITECTURE,),
        )
    )
    register(
        EmbeddingFamily(
            model_name="echo-embedding",
            model_description="Toy embedding model of modelyard's example engine (deterministic vectors).",
            dimensions=8,
            max_tokens=512,
            model_specs=(spec,),
            architectures=(ARCHITECTURE,),
        )
    )


@hookimpl
def match_engine(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
) -> list[Match]:
    """Answer for our engine only, from the arguments alone (no I/O). Every no says why, in words a
    user can act on. Accepting only our own architecture keeps the toy from competing with real
    engines for real models."""
    if spec.model_format != "pytorch":
        return [Match.no(ENGINE, f"serves the pytorch format only, not {spec.model_format}")]
    if ARCHITECTURE not in family.architectures:
        return [
            Match.no(
                ENGINE,
                f"serves the {ARCHITECTURE} architecture only (this model is {_arch(family)})",
            )
        ]
    if isinstance(family, RerankFamily):
        return [Match.no(ENGINE, "cannot rerank")]
    if quantization != "none":
        return [Match.no(ENGINE, f"serves unquantized weights only, not {quantization}")]
    return [Match.yes(ENGINE)]


def _arch(family: Family) -> str:
    return ", ".join(family.architectures) or "of unknown architecture"


@hookimpl
def estimate_resources(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate | None:
    """The core calls this only for the engines this plugin registered. None would mean "use the
    generic estimate"; a real engine computes weights + KV cache with ``modelyard.resources``."""
    return Estimate(
        weights=0, kv_cache=0, overhead=1024 * 1024, device="cpu", notes=("echo model: no weights",)
    )


@hookimpl
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> LoadedModel | None:
    """The core calls this only for the engines this plugin registered. Validate ``params`` first,
    naming close matches, then import the engine library (here, our own model module) and load the
    weights at ``path``."""
    for name, value in params.items():
        if name not in PARAMS:
            close = difflib.get_close_matches(name, PARAMS, n=3)
            hint = (
                f"; did you mean {', '.join(close)}?"
                if close
                else f"; it accepts: {', '.join(PARAMS)}"
            )
            raise InvalidRequest(
                f"unknown parameter {name!r} for the {ENGINE} engine{hint}", param=name
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(
                f"parameter {name!r} must be a positive integer, got {value!r}", param=name
            )
    from .model import EchoEmbedding, EchoModel  # the "engine library": imported only when loading

    if isinstance(family, EmbeddingFamily):
        dims = params.get("dimensions", family.dimensions)
        return EchoEmbedding(
            dimensions=dims, context_length=params.get("context_length", family.max_tokens)
        )
    context = params.get(
        "context_length", family.context_length if isinstance(family, LLMFamily) else 2048
    )
    return EchoModel(context_length=context)


@hookimpl
def engine_environment(engine: str, variant: str) -> Path | None:
    """Optional: the pinned requirements `modelyard env install` builds this engine's own
    environment from (a `uv pip compile` output shipped in the package). The echo engine needs no
    library of its own, so it runs in the server's environment: None."""
    return None


@hookimpl
def prepare_environment(engine: str, variant: str) -> None:
    """Optional: runs in the engine's newly built environment, after `modelyard env install`
    installed its pins, for fix-ups pins cannot express. The echo engine has none."""


@hookimpl
def engine_facts(engine: str) -> dict[str, Any] | None:
    """Optional: runs where the engine's library is installed (a probe of its environment) and
    reports what match_engine needs about it there. The echo engine has no library: None."""
    return None
