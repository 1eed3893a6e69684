"""What SGLang is installed here, and which model architectures it supports, without importing it.

Importing sglang pulls torch and triton (tens of seconds on a small machine), so registration and
``match_engine`` must not. The build is read from package metadata: SGLang's CUDA build brings its
kernel package (``sglang-kernel``, formerly ``sgl-kernel``); an environment with sglang and without
it is one built for SGLang's CPU engine (``modelyard env install SGLang``, which puts an import shim
where the kernels would be). The supported architectures are SGLang's model registry: asked directly
when it is already imported (a runner); otherwise read from the ``EntryClass`` of each module in
SGLang's installed ``srt/models`` folder, which is what the registry is built from (tens of
milliseconds); without SGLang, the list shipped with this plugin (``architectures.txt``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from functools import cache
from pathlib import Path
from typing import Literal

from modelyard.seed_rules import read_name_list
from msgspec import Struct

Build = Literal["cuda", "cpu"]
ArchitectureSource = Literal["sglang-registry", "sglang-source", "shipped-list"]

KERNEL_DISTRIBUTIONS = ("sglang-kernel", "sgl-kernel")
REGISTRY_MODULE = "sglang.srt.models.registry"
SHIPPED_LIST = Path(__file__).with_name("architectures.txt")
INSTALL_HINT = (
    "run `modelyard env install SGLang` (an environment of its own: SGLang for its CPU engine, "
    "pinned), or install it here: `pip install sglang` (CUDA)"
)
_ENTRY_CLASS = re.compile(r"^EntryClass\s*=\s*(\[[^\]]*\]|\w+)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z_]\w*")


class SglangInstall(Struct, frozen=True):
    """The SGLang found in this environment: ``build`` is None when SGLang is not installed."""

    build: Build | None
    version: str | None = None

    @property
    def installed(self) -> bool:
        return self.build is not None


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def detect_install() -> SglangInstall:
    """Read the installed SGLang build from package metadata (no import of sglang or torch)."""
    version = _version("sglang")
    if version is None:
        return SglangInstall(None)
    has_kernels = any(_version(name) is not None for name in KERNEL_DISTRIBUTIONS)
    return SglangInstall("cuda" if has_kernels else "cpu", version)


def _models_folder() -> Path | None:
    try:
        spec = importlib.util.find_spec("sglang")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "srt" / "models"
    return folder if folder.is_dir() else None


def read_models_folder(folder: Path) -> frozenset[str]:
    """The class names each module of SGLang's ``srt/models`` declares as its ``EntryClass`` (one
    class or a list), which SGLang's registry keys by name. ValueError when none is found (SGLang
    changed how it registers models; the caller falls back)."""
    names: set[str] = set()
    for module in folder.glob("*.py"):
        found = _ENTRY_CLASS.search(module.read_text(encoding="utf-8", errors="replace"))
        if found:
            names.update(_NAME.findall(found.group(1)))
    if not names:
        raise ValueError(f"no EntryClass found under {folder}")
    return frozenset(names)


@cache
def supported_architectures() -> tuple[frozenset[str], ArchitectureSource]:
    """SGLang's supported architectures and where the answer came from; computed once per process."""
    registry = sys.modules.get(REGISTRY_MODULE)
    if registry is not None:  # already imported (a runner): ask it, runtime registrations included
        return frozenset(registry.ModelRegistry.get_supported_archs()), "sglang-registry"
    folder = _models_folder()
    if folder is not None:
        try:
            return read_models_folder(folder), "sglang-source"
        except (OSError, ValueError):
            pass  # an SGLang whose layout changed: the shipped list is the best we have
    return read_name_list(SHIPPED_LIST), "shipped-list"
