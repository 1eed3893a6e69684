"""An engine library's facts without importing it: the architecture sources in their order, the
facts' round trip from the engine's own environment, and how a refusal names its source."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
from modelyard.engine_library import (
    ArchitectureReader,
    LibraryFacts,
    library_engine_info,
    package_path,
    pins_file,
)
from modelyard.specs import LLMFamily
from msgspec import Struct


class Lib(Struct, frozen=True):
    version: str | None = None

    @property
    def installed(self) -> bool:
        return self.version is not None


def llm(architecture: str) -> LLMFamily:
    return LLMFamily(
        model_name="m",
        model_specs=(),
        model_ability=("chat",),
        context_length=2048,
        architectures=(architecture,),
    )


def reader(tmp_path: Path, read: object = None) -> ArchitectureReader:
    shipped = tmp_path / "architectures.txt"
    shipped.write_text("# shipped\nShippedForCausalLM\n")

    def from_source(path: Path) -> frozenset[str]:
        if isinstance(read, Exception):
            raise read
        return frozenset({f"{path.name}ForCausalLM"})

    # msgspec's package folder stands in for an installed library's source.
    return ArchitectureReader("no_such_lib.registry", ("msgspec",), from_source, shipped)


def test_architectures_come_from_the_registry_then_the_source_then_the_shipped_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert reader(tmp_path).supported == (frozenset({"msgspecForCausalLM"}), "source")
    broken = reader(tmp_path, ValueError("layout changed")).supported
    assert broken == (frozenset({"ShippedForCausalLM"}), "shipped-list")
    missing = dataclasses.replace(reader(tmp_path), source=("no_such_lib",))
    assert missing.supported == (frozenset({"ShippedForCausalLM"}), "shipped-list")
    registry = types.ModuleType("no_such_lib.registry")
    registry.ModelRegistry = types.SimpleNamespace(get_supported_archs=lambda: ["LiveModel"])  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "no_such_lib.registry", registry)
    assert reader(tmp_path).supported == (frozenset({"LiveModel"}), "registry")


def test_facts_reported_in_one_environment_are_read_back_in_another(tmp_path: Path) -> None:
    here = LibraryFacts.here(Lib("1.2"), reader(tmp_path))
    back = LibraryFacts.for_matching(here.reported(), Lib(None), reader(tmp_path))
    assert back == here and isinstance(back.install, Lib)
    assert LibraryFacts.for_matching(None, Lib("3"), reader(tmp_path)).install == Lib("3")


def test_an_architecture_refusal_names_whose_list_said_so() -> None:
    family = llm("MadeUp")
    found = LibraryFacts(Lib("0.5"), frozenset({"Llama"}), "source")
    reason = found.architecture_reason("Eng", family, "modelyard-engine-eng", "englib")
    assert "MadeUp" in reason and "Eng's model registry (englib 0.5)" in reason
    shipped = dataclasses.replace(found, source="shipped-list")
    assert "shipped with modelyard-engine-eng" in shipped.architecture_reason(
        "Eng", family, "modelyard-engine-eng", "englib"
    )
    assert found.architecture_reason("Eng", llm("Llama"), "p", "l") == ""


def test_engine_info_pins_and_package_paths(tmp_path: Path) -> None:
    info = library_engine_info(
        "Eng", "englib", Lib(None), model_types=("LLM",), formats=("pytorch",), install_hint="do X"
    )
    assert not info.available and info.unavailable_reason == "Eng is not installed: do X"
    (tmp_path / "requirements-cpu.txt").write_text("x==1\n")
    assert pins_file(tmp_path, "cpu") == tmp_path / "requirements-cpu.txt"
    assert pins_file(tmp_path, "cuda") is None
    assert package_path("msgspec", "__init__.py") is not None
    assert package_path("msgspec", "nothing-here") is None and package_path("no_such_lib") is None
