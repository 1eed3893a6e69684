"""Launch parameters: sorting, validation with close matches, and the defaults modelyard applies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from modelyard.errors import InvalidRequest
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSource, ModelSpec
from modelyard_vllm.args import CPU_KV_CACHE_BYTES, LaunchArgs, apply_defaults, split_params

# A stand-in for vLLM's EngineArgs fields, so these run without vllm (the real set is tested below).
ENGINE_NAMES = frozenset(
    {
        "gpu_memory_utilization",
        "max_model_len",
        "tensor_parallel_size",
        "dtype",
        "enforce_eager",
        "quantization",
        "kv_cache_memory_bytes",
        "runner",
        "model",
        "served_model_name",
        "tokenizer",
        "disable_log_stats",
    }
)
SPEC = ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", "/m"),))


def family(**kw: object) -> LLMFamily:
    return LLMFamily(
        model_name="smollm2",
        model_specs=(SPEC,),
        model_ability=("chat", "tools"),
        context_length=8192,
        **kw,
    )  # type: ignore[arg-type]


def test_engine_arguments_and_frontend_options_are_sorted() -> None:
    launch = split_params(
        {"max-model-len": 2048, "dtype": "float16", "tool_call_parser": "hermes"},
        engine_names=ENGINE_NAMES,
    )
    assert launch.engine == {"max_model_len": 2048, "dtype": "float16"}
    assert launch.frontend == {"tool_call_parser": "hermes"}


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("gpu_memory_utilisation", "gpu_memory_utilization"),
        ("max_model_length", "max_model_len"),
        ("enforce-eagre", "enforce_eager"),
    ],
)
def test_an_unknown_argument_is_named_with_close_matches(name: str, suggestion: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        split_params({name: 1}, engine_names=ENGINE_NAMES)
    assert repr(name) in info.value.message and repr(suggestion) in info.value.message
    assert info.value.param == name and info.value.status == 400


def test_an_unrelated_name_gets_no_suggestion_but_the_known_examples() -> None:
    with pytest.raises(InvalidRequest) as info:
        split_params({"zzz": 1}, engine_names=ENGINE_NAMES)
    assert "did you mean" not in info.value.message and "max_model_len" in info.value.message


@pytest.mark.parametrize("name", ["model", "served_model_name", "tokenizer"])
def test_modelyard_owned_arguments_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="set by modelyard"):
        split_params({name: "x"}, engine_names=ENGINE_NAMES)


def test_cpu_defaults_fill_only_what_the_user_left_out() -> None:
    mine = apply_defaults(
        LaunchArgs(engine={"dtype": "bfloat16"}, frontend={}),
        family=family(),
        path=Path("/m"),
        on_cpu=True,
        model_type="LLM",
    )
    assert mine.engine["dtype"] == "bfloat16"
    assert (
        mine.engine["enforce_eager"] is True
        and mine.engine["kv_cache_memory_bytes"] == CPU_KV_CACHE_BYTES
    )
    assert mine.engine["model"] == "/m"
    gpu = apply_defaults(
        LaunchArgs(engine={}, frontend={}),
        family=family(),
        path=Path("/m"),
        on_cpu=False,
        model_type="LLM",
    )
    assert (
        "dtype" not in gpu.engine
        and "enforce_eager" not in gpu.engine
        and "kv_cache_memory_bytes" not in gpu.engine
    )
    asked = apply_defaults(
        LaunchArgs(engine={"enforce_eager": False}, frontend={}),
        family=family(),
        path=Path("/m"),
        on_cpu=True,
        model_type="LLM",
    )
    assert asked.engine["enforce_eager"] is False


def test_catalog_template_and_tool_parser_reach_vllms_frontend() -> None:
    launch = apply_defaults(
        LaunchArgs(engine={}, frontend={}),
        family=family(tool_parser="hermes", chat_template="{{ x }}"),
        path=Path("/m"),
        on_cpu=True,
        model_type="LLM",
    )
    assert launch.frontend == {
        "chat_template": "{{ x }}",
        "tool_call_parser": "hermes",
        "enable_auto_tool_choice": True,
    }
    plain = apply_defaults(
        LaunchArgs(engine={}, frontend={}),
        family=family(),
        path=Path("/m"),
        on_cpu=True,
        model_type="LLM",
    )
    assert plain.frontend == {}


@pytest.mark.parametrize(("catalog", "vllm"), [("qwen", "hermes"), ("llama3", "llama3_json")])
def test_catalog_tool_parser_names_become_vllms(catalog: str, vllm: str) -> None:
    launch = apply_defaults(
        LaunchArgs(engine={}, frontend={}),
        family=family(tool_parser=catalog),
        path=Path("/m"),
        on_cpu=True,
        model_type="LLM",
    )
    assert launch.frontend["tool_call_parser"] == vllm


def test_embedding_models_use_the_pooling_runner() -> None:
    emb = EmbeddingFamily(model_name="minilm", model_specs=(SPEC,), dimensions=384, max_tokens=256)
    launch = apply_defaults(
        LaunchArgs(engine={}, frontend={}),
        family=emb,
        path=Path("/m"),
        on_cpu=True,
        model_type="embedding",
    )
    assert launch.engine["runner"] == "pooling"


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vllm is not installed in this environment"
)
def test_the_real_engine_arguments_include_the_documented_ones() -> None:
    from modelyard_vllm.args import engine_arg_names

    names = engine_arg_names()
    assert {
        "gpu_memory_utilization",
        "max_model_len",
        "tensor_parallel_size",
        "dtype",
        "enforce_eager",
        "quantization",
        "kv_cache_memory_bytes",
    } <= names
    with pytest.raises(InvalidRequest, match="'gpu_memory_utilization'"):
        split_params({"gpu_memory_utilisation": 0.5}, engine_names=names)


def test_generic_names_become_vllm_arguments_and_vllm_names_win() -> None:
    names = frozenset({"max_model_len", "max_num_seqs"})
    launch = split_params({"context_length": 1024, "parallel": 2}, engine_names=names)
    assert launch.engine == {"max_model_len": 1024, "max_num_seqs": 2}
    both = {"context_length": 1024, "max_model_len": 512, "parallel": 2}
    assert split_params(both, engine_names=names).engine == {
        "max_model_len": 512,
        "max_num_seqs": 2,
    }
