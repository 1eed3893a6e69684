"""Launch parameters → SGLang's ServerArgs: names checked with close matches, defaults filled.

The accepted names are an argument here (the runner reads them from the installed SGLang)."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelyard.errors import InvalidRequest
from modelyard.specs import EmbeddingFamily, LLMFamily, ModelSource, ModelSpec
from modelyard_sglang.args import (
    CPU_MAX_TOTAL_TOKENS,
    apply_defaults,
    check_params,
    settle_tool_parser,
)

KNOWN = frozenset(
    {"context_length", "max_total_tokens", "mem_fraction_static", "max_running_requests",
     "tp_size", "dtype", "device", "chat_template", "tool_call_parser", "is_embedding",
     "log_level", "model_path", "served_model_name", "tokenizer_path"}
)  # fmt: skip
SPEC = ModelSpec("pytorch", 0.135, ("none",), (ModelSource("local", "/m/x"),))


def test_known_names_pass_with_dashes_and_generic_names_renamed() -> None:
    checked = check_params(
        {"max-total-tokens": 2048, "parallel": 4, "dtype": "bfloat16"}, known=KNOWN
    )
    assert checked == {"max_total_tokens": 2048, "max_running_requests": 4, "dtype": "bfloat16"}
    # SGLang's own name wins over the generic one.
    both = check_params({"parallel": 4, "max_running_requests": 8}, known=KNOWN)
    assert both == {"max_running_requests": 8}


def test_an_unknown_name_is_refused_with_its_close_matches() -> None:
    with pytest.raises(InvalidRequest) as info:
        check_params({"max_total_tokns": 10}, known=KNOWN)
    assert "'max_total_tokns'" in info.value.message and "'max_total_tokens'" in info.value.message
    assert info.value.param == "max_total_tokns"


@pytest.mark.parametrize("name", ["model_path", "served_model_name", "tokenizer-path"])
def test_names_modelyard_sets_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest, match="set by modelyard"):
        check_params({name: "x"}, known=KNOWN)


def family(**kw: object) -> LLMFamily:
    kw.setdefault("model_ability", ("chat",))
    return LLMFamily(model_name="smol", model_specs=(SPEC,), context_length=8192, **kw)  # type: ignore[arg-type]


def test_cpu_defaults_cap_the_kv_pool_and_use_float32() -> None:
    filled = apply_defaults({}, family=family(), path=Path("/m/x"), on_cpu=True, served_name="s")
    assert filled["device"] == "cpu" and filled["dtype"] == "float32"
    assert filled["sleep_on_idle"] is True  # not a core busy-polling while idle
    assert filled["max_total_tokens"] == CPU_MAX_TOTAL_TOKENS
    assert filled["model_path"] == "/m/x" and filled["served_model_name"] == "s"
    bigger = apply_defaults(
        {"context_length": 16384}, family=family(), path=Path("/m"), on_cpu=True, served_name="s"
    )
    assert bigger["max_total_tokens"] == 16384  # one request of the whole context fits
    mine = apply_defaults(
        {"max_total_tokens": 512, "dtype": "bfloat16"},
        family=family(), path=Path("/m"), on_cpu=True, served_name="s",
    )  # fmt: skip
    assert mine["max_total_tokens"] == 512 and mine["dtype"] == "bfloat16"


def test_gpu_defaults_leave_sglangs_own_sizing() -> None:
    filled = apply_defaults({}, family=family(), path=Path("/m"), on_cpu=False, served_name="s")
    assert "max_total_tokens" not in filled and "device" not in filled and "dtype" not in filled
    assert "sleep_on_idle" not in filled


def test_catalog_template_tool_parser_and_embedding_mode() -> None:
    tools = family(model_ability=("chat", "tools"), tool_parser="hermes", chat_template="{{x}}")
    filled = apply_defaults({}, family=tools, path=Path("/m"), on_cpu=True, served_name="s")
    assert filled["tool_call_parser"] == "hermes" and filled["chat_template"] == "{{x}}"
    embedding = EmbeddingFamily(model_name="e", model_specs=(SPEC,), dimensions=384, max_tokens=256)
    filled = apply_defaults({}, family=embedding, path=Path("/m"), on_cpu=True, served_name="e")
    assert filled["is_embedding"] is True


def test_an_unknown_tool_parser_fails_the_launch_with_close_matches() -> None:
    known = ["qwen25", "llama3", "mistral"]
    settle_tool_parser({"tool_call_parser": "qwen25"}, chosen=True, known=known)
    with pytest.raises(InvalidRequest, match="'qwen25'"):
        settle_tool_parser({"tool_call_parser": "qwen2"}, chosen=True, known=known)


def test_a_catalog_tool_parser_sglang_lacks_is_left_to_modelyards_parser() -> None:
    args = {"tool_call_parser": "deepseek_r1", "dtype": "float32"}
    settle_tool_parser(args, chosen=False, known=["qwen25", "llama3"])
    assert args == {"dtype": "float32"}
