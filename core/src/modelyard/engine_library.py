"""What an engine plugin knows about its library without importing it, here or in the engine's own
environment. For engines whose import pulls torch (vLLM, SGLang: tens of seconds on a small
machine), so registration and ``match_engine`` never import them:

- the installed build, from package metadata (``distribution_version``);
- the supported architectures, best source first (``ArchitectureReader``): the library's model
  registry when it is already imported (a runner), its installed source read without running it,
  else the list shipped with the plugin;
- ``LibraryFacts``: those facts for ``match_engine``, taken from this environment or from what
  ``engine_facts`` reported where the engine is installed (``modelyard env``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar

import msgspec

from .seed_rules import architecture_reason, read_name_list
from .specs import EngineInfo, Family, ModelFormat, ModelType

ArchitectureSource = Literal["registry", "source", "shipped-list"]


class Install(Protocol):
    """A plugin's msgspec Struct for the build it found (None version when not installed)."""

    @property
    def installed(self) -> bool: ...

    @property
    def version(self) -> str | None: ...


InstallT = TypeVar("InstallT", bound=Install)


def distribution_version(name: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def package_path(package: str, *parts: str) -> Path | None:
    """A path inside an installed package's folder, found without importing it; None if absent."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.exists() else None


@dataclass(frozen=True)
class ArchitectureReader:
    """Where an engine's supported architectures are read from (see the module docstring)."""

    registry_module: str  # its ``ModelRegistry.get_supported_archs()``, when already imported
    source: tuple[str, ...]  # package and path of the installed source ``read_source`` reads
    # The names in that source; ValueError/SyntaxError when its shape changed (the shipped list
    # stands in then).
    read_source: Callable[[Path], frozenset[str]]
    shipped_list: Path

    @cached_property
    def supported(self) -> tuple[frozenset[str], ArchitectureSource]:
        """The architectures and where they came from; computed once per process."""
        registry = sys.modules.get(self.registry_module)
        if registry is not None:  # a runner: ask it, runtime registrations included
            return frozenset(registry.ModelRegistry.get_supported_archs()), "registry"
        path = package_path(*self.source)
        if path is not None:
            try:
                return self.read_source(path), "source"
            except (OSError, SyntaxError, ValueError):
                pass  # a release whose layout changed: the shipped list is the best we have
        return read_name_list(self.shipped_list), "shipped-list"


@dataclass(frozen=True)
class LibraryFacts(Generic[InstallT]):
    """What ``match_engine`` judges by: the build, and the architectures with their source."""

    install: InstallT
    architectures: frozenset[str]
    source: ArchitectureSource

    @classmethod
    def here(cls, install: InstallT, reader: ArchitectureReader) -> LibraryFacts[InstallT]:
        architectures, source = reader.supported
        return cls(install, architectures, source)

    @classmethod
    def for_matching(
        cls,
        there: Mapping[str, Any] | None,
        install: InstallT,
        reader: ArchitectureReader,
    ) -> LibraryFacts[InstallT]:
        """The facts ``engine_facts`` reported from the engine's own environment (``there``), or
        else this environment's."""
        if there is None:
            return cls.here(install, reader)
        return cls(
            msgspec.convert(there["install"], type(install)),
            frozenset(there["architectures"]),
            there["source"],
        )

    def reported(self) -> dict[str, Any]:
        """``engine_facts``'s answer: what ``for_matching`` reads back in another process."""
        return {
            "install": msgspec.to_builtins(self.install),
            "architectures": sorted(self.architectures),
            "source": self.source,
        }

    def architecture_reason(self, engine: str, family: Family, plugin: str, library: str) -> str:
        """Why none of the family's architectures is supported, naming whose list said so (and
        the library's release), or "" when one is."""
        if self.source == "shipped-list":
            where = f"the architecture list shipped with {plugin} ({engine} is not installed)"
        else:
            where = f"{engine}'s model registry"
            if self.install.version:
                where = f"{where} ({library} {self.install.version})"
        return architecture_reason(engine, family, self.architectures, where) or ""


def library_engine_info(
    name: str,
    library: str,
    install: Install,
    *,
    model_types: tuple[ModelType, ...],
    formats: tuple[ModelFormat, ...],
    install_hint: str,
) -> EngineInfo:
    """The ``EngineInfo`` of an engine that serves chat, completion, embeddings and tools from a
    library that may be missing here (then unavailable, with how to install it)."""
    return EngineInfo(
        name=name,
        model_types=model_types,
        abilities=("chat", "generate", "embed", "tools"),
        formats=formats,
        library=library,
        library_version=install.version,
        available=install.installed,
        unavailable_reason=None
        if install.installed
        else f"{name} is not installed: {install_hint}",
    )


def pins_file(folder: Path, variant: str) -> Path | None:
    """A plugin's pinned environment for ``variant`` (``requirements-<variant>.txt``), if shipped."""
    pins = folder / f"requirements-{variant}.txt"
    return pins if pins.is_file() else None
