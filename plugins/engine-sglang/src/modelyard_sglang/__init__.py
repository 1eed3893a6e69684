"""modelyard engine plugin for SGLang: the eligibility rule, memory estimate, environment and loading.

Registering this plugin imports neither sglang nor torch: the installed build is read from package
metadata once, at import, and SGLang's supported architectures on first use (see ``install``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from modelyard import hookimpl
from modelyard.engine import LoadedModel
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

from .estimate import estimate
from .install import SglangInstall, detect_install, supported_architectures
from .rule import ENGINE, engine_info, match

# Plugin state, fixed for the process: which SGLang build is installed (package metadata only).
INSTALL = detect_install()


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    register(engine_info(INSTALL))


@hookimpl
def match_engine(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    facts: Mapping[str, Mapping[str, Any]],
) -> list[Match]:
    there = facts.get(ENGINE)
    if there is not None:  # SGLang runs in an environment of its own: judge by what it has
        install = msgspec.convert(there["install"], SglangInstall)
        architectures, source = frozenset(there["architectures"]), there["source"]
    else:
        install = INSTALL
        architectures, source = supported_architectures()
    return [
        match(
            family,
            spec,
            quantization,
            hardware,
            install=install,
            architectures=architectures,
            source=source,
        )
    ]


@hookimpl
def engine_facts(engine: str) -> dict[str, Any]:
    """What match_engine needs, asked where SGLang is installed: its build and architectures."""
    architectures, source = supported_architectures()
    return {
        "install": msgspec.to_builtins(INSTALL),
        "architectures": sorted(architectures),
        "source": source,
    }


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
    from .launch import load  # imports sglang: only in the runner that loads

    return load(family, params, path, INSTALL)


@hookimpl
def engine_environment(engine: str, variant: str) -> Path | None:
    """Pins per variant: cpu (SGLang without its CUDA parts, the CPU torch) and cuda (SGLang with
    everything it declares: PyPI's CUDA torch, its kernels, flashinfer)."""
    pins = Path(__file__).parent / "pins" / f"requirements-{variant}.txt"
    return pins if pins.is_file() else None


@hookimpl
def prepare_environment(engine: str, variant: str) -> None:
    """The CPU recipe (sgl_kernel import shim, torchvision guard) in a CPU environment."""
    if variant == "cpu":
        from .cpu_recipe import apply

        changed = apply()
        print(f"SGLang CPU recipe: {', '.join(changed) or 'already applied'}")
