"""Reading SGLang's build and supported architectures without importing it; the CPU recipe."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.seed_rules import read_name_list
from modelyard_sglang import cpu_recipe
from modelyard_sglang.install import ARCHITECTURES, read_models_folder

TORCHVISION_META = """import torchvision.extension
@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    pass
@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    pass
"""


def test_architectures_are_read_from_each_models_entry_class(tmp_path: Path) -> None:
    (tmp_path / "llama.py").write_text(
        "class LlamaForCausalLM: ...\nEntryClass = [\n    LlamaForCausalLM,\n    Phi3ForCausalLM,\n]\n"
    )
    (tmp_path / "qwen2.py").write_text(
        "class Qwen2ForCausalLM: ...\nEntryClass = Qwen2ForCausalLM\n"
    )
    (tmp_path / "utils.py").write_text("def helper(): ...\n")
    names = read_models_folder(tmp_path)
    assert names == {"LlamaForCausalLM", "Phi3ForCausalLM", "Qwen2ForCausalLM"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no EntryClass"):
        read_models_folder(empty)


def test_the_shipped_list_has_sglangs_common_architectures() -> None:
    names = read_name_list(ARCHITECTURES.shipped_list)
    assert {"LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM"} <= names
    assert not any(name.startswith("#") for name in names)


def test_the_torchvision_guard_wraps_both_registrations_once() -> None:
    guarded = cpu_recipe.guard_text(TORCHVISION_META)
    assert guarded.count("if torchvision.extension._has_ops() else (lambda fn: fn)") == 2
    assert cpu_recipe.guard_text(guarded) == guarded  # idempotent
    compile(guarded, "meta", "exec")  # still Python
    with pytest.raises(RuntimeError, match="is gone"):
        cpu_recipe.guard_text("import torch\n")


def test_the_recipe_installs_the_shim_and_patches_torchvision_idempotently(tmp_path: Path) -> None:
    (tmp_path / "sglang").mkdir()
    (tmp_path / "torchvision").mkdir()
    (tmp_path / "torchvision" / "_meta_registrations.py").write_text(TORCHVISION_META)
    assert cpu_recipe.apply(tmp_path) == ["sgl_kernel import shim", "torchvision nms/qnms guard"]
    assert cpu_recipe.apply(tmp_path) == []
    shim = (tmp_path / "sgl_kernel" / "__init__.py").read_text()
    assert "MODELYARD_CPU_SHIM" in shim


def test_the_recipe_never_replaces_a_real_kernel_package(tmp_path: Path) -> None:
    (tmp_path / "sglang").mkdir()
    (tmp_path / "sgl_kernel").mkdir()
    (tmp_path / "sgl_kernel" / "__init__.py").write_text("from .ops import *\n")
    with pytest.raises(RuntimeError, match="real kernel package"):
        cpu_recipe.apply(tmp_path)


def test_the_shim_satisfies_imports_and_refuses_calls() -> None:
    namespace: dict[str, object] = {}
    exec(cpu_recipe.SHIM.read_text(), namespace)
    getattr_ = namespace["__getattr__"]
    kernel = getattr_("copy_all_layer_kv_cache_cpu")  # type: ignore[operator]
    with pytest.raises(NotImplementedError, match="copy_all_layer_kv_cache_cpu"):
        kernel()
    with pytest.raises(AttributeError):
        getattr_("__path__")  # type: ignore[operator]


def test_the_plugin_ships_cpu_and_cuda_pins_of_one_sglang_release() -> None:
    import modelyard_sglang

    def pinned(variant: str) -> dict[str, str]:
        pins = modelyard_sglang.engine_environment(engine="SGLang", variant=variant)
        assert pins is not None and pins.is_file()
        lines = pins.read_text().splitlines()
        return dict(line.split("==", 1) for line in lines if "==" in line and line[0] != " ")

    cpu, cuda = pinned("cpu"), pinned("cuda")
    assert cpu["sglang"] == cuda["sglang"]
    assert cpu["torch"].endswith("+cpu") and "sglang-kernel" not in cpu
    assert "+" not in cuda["torch"] and "sglang-kernel" in cuda and "flashinfer-python" in cuda
    assert modelyard_sglang.engine_environment(engine="SGLang", variant="rocm") is None
