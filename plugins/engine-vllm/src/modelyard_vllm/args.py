"""Launch parameters → vLLM's engine arguments and OpenAI-frontend options, checked before vLLM starts.

Engine arguments are whatever vLLM's ``EngineArgs`` dataclass has (gpu_memory_utilization,
max_model_len, tensor_parallel_size, dtype, enforce_eager, quantization, ...): the accepted set is
read from the installed vLLM, so it follows vLLM's releases. A few options of vLLM's OpenAI server
(chat template, tool parser, ...) are honoured too, since modelyard hosts that layer in-process.
Dashes are accepted for underscores, as on vLLM's command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest, did_you_mean
from modelyard.specs import Family, LLMFamily
from msgspec import Struct

# vLLM OpenAI-server options (not EngineArgs fields) that make sense for an in-process server.
FRONTEND_OPTIONS = frozenset(
    {
        "chat_template",
        "chat_template_content_format",
        "default_chat_template_kwargs",
        "enable_auto_tool_choice",
        "enable_prompt_tokens_details",
        "exclude_tools_when_tool_choice_none",
        "response_role",
        "return_tokens_as_token_ids",
        "tool_call_parser",
        "tool_parser_plugin",
        "trust_request_chat_template",
    }
)
# Set by modelyard itself: the weights it resolved and the name it serves them under.
RESERVED = frozenset({"model", "served_model_name", "tokenizer"})
CPU_KV_CACHE_BYTES = 1 << 30


class LaunchArgs(Struct, kw_only=True):
    engine: dict[str, Any]
    frontend: dict[str, Any]


def engine_arg_names() -> frozenset[str]:
    """The field names of the installed vLLM's ``AsyncEngineArgs`` (imports vllm)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return frozenset(field.name for field in dataclasses.fields(AsyncEngineArgs))


# modelyard's generic names (cal-model-mem -c / --parallel) and vLLM's own for the same thing.
GENERIC_NAMES = {"context_length": "max_model_len", "parallel": "max_num_seqs"}


def with_vllm_names(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the generic names renamed to vLLM's; vLLM's own name wins when both are set."""
    renamed = {k: v for k, v in params.items() if k not in GENERIC_NAMES}
    for generic, name in GENERIC_NAMES.items():
        if generic in params:
            renamed.setdefault(name, params[generic])
    return renamed


def split_params(
    params: dict[str, Any],
    *,
    engine_names: frozenset[str],
    frontend_names: frozenset[str] = FRONTEND_OPTIONS,
) -> LaunchArgs:
    """Sort ``params`` into engine arguments and frontend options; an unknown name is an
    ``InvalidRequest`` that names it and its close matches."""
    engine: dict[str, Any] = {}
    frontend: dict[str, Any] = {}
    for raw, value in with_vllm_names(params).items():
        name = raw.replace("-", "_")
        if name in RESERVED:
            raise InvalidRequest(
                f"vLLM argument {raw!r} is set by modelyard (the model's resolved weights and its uid); "
                "leave it out of the launch parameters",
                param=raw,
            )
        if name in engine_names:
            engine[name] = value
        elif name in frontend_names:
            frontend[name] = value
        else:
            raise InvalidRequest(
                f"unknown vLLM engine argument {raw!r}{did_you_mean(name, engine_names | frontend_names)} "
                "(vLLM's EngineArgs fields are accepted, e.g. gpu_memory_utilization, max_model_len, "
                "tensor_parallel_size, dtype, enforce_eager, quantization)",
                param=raw,
            )
    return LaunchArgs(engine=engine, frontend=frontend)


def apply_defaults(
    launch: LaunchArgs, *, family: Family, path: Path, on_cpu: bool, model_type: str
) -> LaunchArgs:
    """Fill what the user did not set: the weights, the catalog's template and tool parser, and on the
    CPU build float32 (bf16 gives wrong text on common CPUs), eager mode (compiling takes minutes) and a
    1 GiB KV cache (vLLM's CPU default is a share of RAM, too much on a shared machine)."""
    engine = {"model": str(path), **launch.engine}
    frontend = dict(launch.frontend)
    if model_type == "embedding":
        engine.setdefault("runner", "pooling")
    if on_cpu:
        engine.setdefault("dtype", "float32")
        engine.setdefault("enforce_eager", True)
        engine.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE_BYTES)
    engine.setdefault("disable_log_stats", True)
    if isinstance(family, LLMFamily):
        if family.chat_template is not None:
            frontend.setdefault("chat_template", family.chat_template)
        if family.tool_parser is not None and "tools" in family.model_ability:
            parser = CATALOG_TOOL_PARSERS.get(family.tool_parser, family.tool_parser)
            frontend.setdefault("tool_call_parser", parser)
    if frontend.get("tool_call_parser"):
        # vLLM uses its tool parser only with auto tool choice on, for any tool_choice.
        frontend.setdefault("enable_auto_tool_choice", True)
    elif frontend.get("enable_auto_tool_choice"):
        raise InvalidRequest(
            "enable_auto_tool_choice needs tool_call_parser, the parser for this model's tool-call "
            "format (e.g. hermes, llama3_json, mistral)",
            param="enable_auto_tool_choice",
        )
    return LaunchArgs(engine=engine, frontend=frontend)


# The catalog names tool parsers as Xinference does; vLLM registers some under other names.
CATALOG_TOOL_PARSERS = {"qwen": "hermes", "llama3": "llama3_json"}


def check_tool_parser(name: str, known: list[str]) -> None:
    """A tool parser vLLM does not have fails the launch now, not the first request."""
    if name not in known:
        raise InvalidRequest(
            f"vLLM has no tool parser {name!r}{did_you_mean(name, known)} (it has: {', '.join(known)})",
            param="tool_call_parser",
        )
