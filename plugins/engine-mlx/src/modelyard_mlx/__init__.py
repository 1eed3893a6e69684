"""modelyard engine plugin for MLX (mlx-lm): chat and completion with continuous batching.

The first choice on Apple Silicon for ``mlx`` specs; on Linux ``mlx[cpu]`` serves too, ranked after
llama.cpp and Transformers. Registering, matching and estimating never import mlx: the installed
versions come from package metadata, and MLX usually runs in an environment of its own
(``modelyard env install MLX``), whose facts the core probes there.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from modelyard import hookimpl
from modelyard.engine import LoadedModel
from modelyard.engine_library import pins_file
from modelyard.errors import LaunchError
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, LLMFamily, Match, ModelSpec

from .install import MlxInstall, detect_install
from .rule import ENGINE, engine_info, match

INSTALL = detect_install()
SYSTEM = {"darwin": "darwin", "win32": "windows"}.get(sys.platform, "linux")


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    register(engine_info(INSTALL, SYSTEM))


@hookimpl
def match_engine(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    facts: Mapping[str, Mapping[str, Any]],
) -> list[Match]:
    there = facts.get(ENGINE)
    install = msgspec.convert(there["install"], MlxInstall) if there else INSTALL
    return [match(family, spec, quantization, hardware, install)]


@hookimpl
def engine_facts(engine: str) -> dict[str, Any]:
    """What match_engine needs, asked where MLX is installed: the versions found there."""
    return {"install": msgspec.to_builtins(INSTALL)}


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

    return estimate(family, spec, quantization, params, hardware)


@hookimpl
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> LoadedModel | None:
    if not isinstance(family, LLMFamily):
        raise LaunchError(f"the MLX engine serves LLMs, not {family.model_type} models")
    if (reason := INSTALL.missing(SYSTEM)) is not None:
        raise LaunchError(f"MLX cannot load {family.model_name} here: {reason}")
    from .launch import load  # imports mlx: only in the runner that loads

    return load(family, params, Path(path))


@hookimpl
def engine_environment(engine: str, variant: str) -> Path | None:
    """The CPU build's pins (mlx[cpu], mlx-lm) for Linux; on macOS `pip install mlx mlx-lm`."""
    return pins_file(Path(__file__).parent / "pins", variant)
