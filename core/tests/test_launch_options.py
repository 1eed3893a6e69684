"""Launch options the core honours itself: model_path, gpu_idx, request_limits, enable_thinking."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from modelyard.errors import InvalidRequest
from modelyard.runner.manager import _with_thinking
from modelyard.runner.planning import LaunchPlan, _device_env, _local_weights, replica_devices
from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard.server.launch import parse_launch
from modelyard.specs import Accelerator, Hardware, LLMFamily, ModelSource, ModelSpec


def test_core_options_are_typed_and_kept_out_of_engine_params() -> None:
    request = parse_launch(
        {
            "model_name": "m",
            "download_hub": "huggingface",
            "model_path": "/models/m",
            "gpu_idx": [0, 2],
            "request_limits": 8,
            "enable_thinking": False,
            "n_ctx": 512,
        }
    )
    assert request.params == {"n_ctx": 512}
    assert (request.download_hub, request.model_path, request.gpu_idx) == (
        "huggingface",
        "/models/m",
        [0, 2],
    )
    assert (request.request_limits, request.enable_thinking) == (8, False)


def test_a_bad_core_option_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequest, match="request_limits"):
        parse_launch({"model_name": "m", "request_limits": 0})
    with pytest.raises(InvalidRequest, match="download_hub"):
        parse_launch({"model_name": "m", "download_hub": "ftp"})


def test_model_path_must_exist(tmp_path: Path) -> None:
    assert _local_weights(str(tmp_path)) == str(tmp_path)
    assert _local_weights(None) is None
    with pytest.raises(InvalidRequest, match="/no/such/weights"):
        _local_weights("/no/such/weights")
    with pytest.raises(InvalidRequest, match="absolute"):
        _local_weights("relative/weights")


def test_gpu_idx_pins_the_runner_to_those_devices() -> None:
    gpus = tuple(Accelerator("cuda", i, "GPU", 80 * 1024**3, 80 * 1024**3) for i in range(4))
    four = Hardware("linux", "x86_64", 8, 64 * 1024**3, 32 * 1024**3, gpus)
    assert _device_env(None, four) == {}
    assert _device_env(1, four) == {"CUDA_VISIBLE_DEVICES": "1"}
    assert _device_env([0, 3], four) == {"CUDA_VISIBLE_DEVICES": "0,3"}
    with pytest.raises(InvalidRequest, match="gpu_idx"):
        _device_env([-1], four)
    with pytest.raises(
        InvalidRequest, match=r"gpu_idx \[4\] does not exist .* 4 CUDA device\(s\) \(0 to 3\)"
    ):
        _device_env([2, 4], four)
    none = msgspec.structs.replace(four, accelerators=())
    with pytest.raises(InvalidRequest, match="has 0 CUDA device"):
        _device_env(0, none)


def _plan() -> LaunchPlan:
    source = ModelSource(hub="local", model_id="/models/m")
    spec = ModelSpec(
        model_format="pytorch", model_size_in_billions=1, quantizations=("none",), sources=(source,)
    )
    family = LLMFamily(
        model_name="m", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )
    return LaunchPlan(
        model_name="m", model_type="LLM", family=family, spec=spec, quantization="none", engine="e"
    )


def test_replicas_share_gpu_idx_evenly() -> None:
    gpus = tuple(Accelerator("cuda", i, "GPU", 80 * 1024**3, 80 * 1024**3) for i in range(4))
    four = Hardware("linux", "x86_64", 8, 64 * 1024**3, 32 * 1024**3, gpus)
    env = _device_env([0, 1, 2, 3], four, replica=2)
    plan = msgspec.structs.replace(_plan(), env=env, replica=2)
    assert [replica_devices(plan, i) for i in range(3)] == [
        {"CUDA_VISIBLE_DEVICES": "0,1"},
        {"CUDA_VISIBLE_DEVICES": "2,3"},
        {"CUDA_VISIBLE_DEVICES": "0,1"},  # a replica added later takes the first share again
    ]
    assert replica_devices(msgspec.structs.replace(plan, replica=1), 1) == {}
    with pytest.raises(InvalidRequest, match="shared evenly by 3 replicas"):
        _device_env([0, 1], four, replica=3)


def _chat(**fields: object) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="hi")], **fields
    )


def test_enable_thinking_is_a_default_the_request_can_override() -> None:
    assert _with_thinking(_chat(), None).chat_template_kwargs is None
    assert _with_thinking(_chat(), False).chat_template_kwargs == {"enable_thinking": False}
    kept = _chat(chat_template_kwargs={"enable_thinking": True, "x": 1})
    assert _with_thinking(kept, False).chat_template_kwargs == {"enable_thinking": True, "x": 1}
    assert _with_thinking(_chat(enable_thinking=True), False).chat_template_kwargs == {
        "enable_thinking": True
    }
    assert _with_thinking(_chat(enable_thinking=False), None).chat_template_kwargs == {
        "enable_thinking": False
    }
    merged = _with_thinking(_chat(chat_template_kwargs={"x": 1}), True)
    assert merged.chat_template_kwargs == {"x": 1, "enable_thinking": True}
