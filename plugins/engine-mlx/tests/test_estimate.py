"""The memory estimate and launch parameters: no mlx needed (the folder's files are read as data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from modelyard.errors import InvalidRequest
from modelyard.specs import Hardware, LLMFamily, ModelSource, ModelSpec
from modelyard_mlx.estimate import estimate
from modelyard_mlx.params import parse_params

LINUX = Hardware("linux", "x86_64", 2, 24 << 30, 20 << 30)


def family(spec: ModelSpec) -> LLMFamily:
    return LLMFamily(
        model_name="smol", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )


def test_weights_from_the_safetensors_and_kv_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 12345)
    config = {
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "hidden_size": 576,
        "torch_dtype": "float32",
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    spec = ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", str(tmp_path)),))
    answer = estimate(family(spec), spec, "none", {"parallel": 2, "context_length": 1000}, LINUX)
    assert answer is not None
    assert answer.weights == 12345
    assert (
        answer.kv_cache == 2 * 30 * 3 * 64 * 1000 * 2 * 4
    )  # k+v, layers, heads, dims, tokens, seqs, f32
    assert (answer.parallel, answer.context_length, answer.device) == (2, 1000, "cpu")


def test_without_the_folder_the_size_and_bits_count() -> None:
    spec = ModelSpec("mlx", 7, ("4bit",), (ModelSource("huggingface", "mlx-community/none-here"),))
    four = estimate(family(spec), spec, "4bit", {}, LINUX)
    eight = estimate(family(spec), spec, "8bit", {}, LINUX)
    assert four is not None and eight is not None
    assert four.weights == round(7e9 * 4.5 / 8)
    assert eight.weights > four.weights


def test_unknown_parameters_are_refused_with_close_matches() -> None:
    with pytest.raises(InvalidRequest, match="max_num_seqs"):
        parse_params({"max_num_seq": 4})
    with pytest.raises(InvalidRequest, match="at least 1"):
        parse_params({"n_threads": 0})
    assert parse_params({"n_ctx": 512, "parallel": 3}).context_length == 512
