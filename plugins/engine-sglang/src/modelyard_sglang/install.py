"""What SGLang is installed here, and where its supported model architectures are read from,
without importing it (see ``modelyard.engine_library``).

The build is read from package metadata: SGLang's CUDA build brings its kernel package
(``sglang-kernel``, formerly ``sgl-kernel``); an environment with sglang and without it is one built
for SGLang's CPU engine (``modelyard env install SGLang``, which puts an import shim where the
kernels would be). The architectures are SGLang's model registry: asked when already imported (a
runner); otherwise read from the ``EntryClass`` of each module in SGLang's installed ``srt/models``
folder, which is what the registry is built from (tens of milliseconds); without SGLang, the list
shipped with this plugin (``architectures.txt``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from modelyard.engine_library import ArchitectureReader, distribution_version
from msgspec import Struct

Build = Literal["cuda", "cpu"]

KERNEL_DISTRIBUTIONS = ("sglang-kernel", "sgl-kernel")
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


def detect_install() -> SglangInstall:
    """Read the installed SGLang build from package metadata (no import of sglang or torch)."""
    version = distribution_version("sglang")
    if version is None:
        return SglangInstall(None)
    has_kernels = any(distribution_version(name) is not None for name in KERNEL_DISTRIBUTIONS)
    return SglangInstall("cuda" if has_kernels else "cpu", version)


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


ARCHITECTURES = ArchitectureReader(
    registry_module="sglang.srt.models.registry",
    source=("sglang", "srt", "models"),
    read_source=read_models_folder,
    shipped_list=Path(__file__).with_name("architectures.txt"),
)
