"""Registration and matching: cheap, pure, and honest about a missing xllamacpp."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from typing import Any

import modelyard_llamacpp as plugin
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.plugins import PluginManager
from modelyard.specs import EngineInfo, Hardware, LLMFamily, ModelSource, ModelSpec

HARDWARE = Hardware(
    system="linux", machine="x86_64", cpu_count=2, memory_total=1 << 34, memory_available=1 << 33
)
FORMATS = ["pytorch", "ggufv2", "awq", "gptq", "fp4", "fp8", "bnb", "mlx"]


def registered() -> list[EngineInfo]:
    found: list[EngineInfo] = []
    plugin.register_engines(register=found.append)
    return found


def test_entry_point_names_the_module() -> None:
    points = importlib.metadata.entry_points(group="modelyard.engines")
    assert any(ep.name == "llama.cpp" and ep.value == "modelyard_llamacpp" for ep in points)


def test_registration_does_not_import_xllamacpp() -> None:
    code = (
        "import sys, modelyard_llamacpp as p; found = []; p.register_engines(register=found.append); "
        "assert 'xllamacpp' not in sys.modules, 'xllamacpp imported'; print(found[0].name, found[0].available)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [
        "llama.cpp",
        str(importlib.util.find_spec("xllamacpp") is not None),
    ]


def test_declares_the_engine(xllamacpp_installed: None) -> None:
    (info,) = registered()
    assert info.name == "llama.cpp" and info.formats == ("ggufv2",)
    assert set(info.model_types) == {"LLM", "embedding", "rerank"}
    assert info.available and info.library == "xllamacpp"
    assert info.library_version == importlib.metadata.version("xllamacpp")


def test_loads_through_the_plugin_manager() -> None:
    manager = PluginManager()
    manager.register(plugin, name="llama.cpp")
    engine = manager.engine("LLAMA.CPP")
    assert engine is not None and engine.name == "llama.cpp"


def test_missing_library_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, family: LLMFamily, spec: ModelSpec
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "xllamacpp" else real(name, *a),
    )
    try:
        fresh = importlib.reload(plugin)
        found: list[EngineInfo] = []
        fresh.register_engines(register=found.append)
        assert not found[0].available
        assert found[0].unavailable_reason == "pip install xllamacpp"
        (answer,) = fresh.match_engine(
            family=family, spec=spec, quantization="Q4_1", hardware=HARDWARE
        )
        assert not answer.ok and "pip install xllamacpp" in (answer.reason or "")
    finally:
        monkeypatch.undo()
        importlib.reload(plugin)


def _spec(model_format: Any) -> ModelSpec:
    return ModelSpec(
        model_format=model_format,
        model_size_in_billions=1,
        quantizations=("q",),
        sources=(ModelSource(hub="huggingface", model_id="org/model"),),
    )


def test_gguf_yes_others_no_with_a_reason(family: LLMFamily, xllamacpp_installed: None) -> None:
    (yes,) = plugin.match_engine(
        family=family, spec=_spec("ggufv2"), quantization="Q4_K_M", hardware=HARDWARE
    )
    assert yes.ok
    (no,) = plugin.match_engine(
        family=family, spec=_spec("pytorch"), quantization="none", hardware=HARDWARE
    )
    assert not no.ok and "GGUF files only" in (no.reason or "") and "pytorch" in (no.reason or "")


@given(
    model_format=st.sampled_from(FORMATS), quantization=st.text(max_size=12), gpus=st.integers(0, 2)
)
def test_match_is_pure_and_total(model_format: str, quantization: str, gpus: int) -> None:
    family = LLMFamily(
        model_name="m", model_specs=(_spec("ggufv2"),), model_ability=("chat",), context_length=4096
    )
    spec = _spec(model_format)
    first = plugin.match_engine(
        family=family, spec=spec, quantization=quantization, hardware=HARDWARE
    )
    second = plugin.match_engine(
        family=family, spec=spec, quantization=quantization, hardware=HARDWARE
    )
    assert first == second and len(first) == 1 and first[0].engine == "llama.cpp"
    if plugin.LIBRARY_VERSION is not None:
        assert first[0].ok == (model_format == "ggufv2")
    assert first[0].ok or first[0].reason
