"""Launch failures, for real: bad arguments refused before vLLM starts, and vLLM's own start-up error
carried into the launch error (it is printed by vLLM's engine process, not raised)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import anyio
import pytest
from modelyard.errors import InvalidRequest, LaunchError
from modelyard.specs import LLMFamily, ModelSource, ModelSpec
from modelyard_vllm import load_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning"),
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not importable here; run plugins/engine-vllm/scripts/test.sh (it builds .venv-vllm)",
    ),
]


def load(path: Path, params: dict[str, Any], **family: Any) -> Any:
    spec = ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", str(path)),))
    fam = LLMFamily(
        model_name="smollm2-135m-instruct",
        model_specs=(spec,),
        model_ability=("chat", "tools"),
        context_length=8192,
        architectures=("LlamaForCausalLM",),
        **family,
    )
    return load_model(
        engine="vLLM", family=fam, spec=spec, quantization="none", params=params, path=path
    )


def test_an_unknown_engine_argument_is_named_before_vllm_starts(smollm2_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        load(smollm2_path, {"gpu_memory_utilisation": 0.5, "max_model_len": 1024})
    assert (
        "'gpu_memory_utilisation'" in info.value.message
        and "'gpu_memory_utilization'" in info.value.message
    )
    assert info.value.param == "gpu_memory_utilisation"


def test_an_unknown_tool_parser_is_refused_at_launch(smollm2_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        load(smollm2_path, {}, tool_parser="hermess")
    assert "'hermess'" in info.value.message and "'hermes'" in info.value.message


def test_a_bad_value_fails_the_launch_with_vllms_message(smollm2_path: Path) -> None:
    with pytest.raises(LaunchError) as info:
        load(smollm2_path, {"dtype": "float33"})
    assert "float33" in info.value.message and info.value.status == 400


# vLLM leaves its ZMQ context unclosed when its engine process fails to start; that is its leak.
@pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)
def test_vllm_failing_to_start_surfaces_the_engine_process_error(
    smollm2_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A KV cache of one kilobyte: vLLM's engine process refuses it after loading the weights.
    # (VLLM_CPU_KVCACHE_SPACE, when set, overrides kv_cache_memory_bytes on the CPU build.)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    try:
        started = load(smollm2_path, {"kv_cache_memory_bytes": 1024, "max_model_len": 1024})
    except LaunchError as exc:
        message = exc.message
    else:
        anyio.run(started.close)
        pytest.fail("vLLM started with a 1 KiB KV cache")
    assert message.startswith("vLLM failed to start smollm2-135m-instruct: ")
    assert "cache" in message.lower() and "see root cause above" not in message.lower()
