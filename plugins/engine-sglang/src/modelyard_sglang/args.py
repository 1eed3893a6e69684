"""Launch parameters → SGLang's ``ServerArgs``, checked before SGLang starts.

Engine arguments are whatever SGLang's ``ServerArgs`` accepts (context_length, mem_fraction_static,
max_total_tokens, max_running_requests, tp_size, dtype, quantization, attention_backend,
grammar_backend, tool_call_parser, ...): the accepted set is read from the installed SGLang, so it
follows SGLang's releases. Dashes are accepted for underscores, as on SGLang's command line.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest, did_you_mean
from modelyard.specs import Family, LLMFamily

# Set by modelyard itself: the weights it resolved and the name it serves them under.
# nccl_port: the loopback rendezvous port modelyard binds (store.py).
RESERVED = frozenset({"model_path", "tokenizer_path", "served_model_name", "nccl_port"})
# SGLang's CPU default sizes the KV pool from a share of RAM (13.7 GB on a 24 GB machine): the CPU
# engine gets a pool of this many tokens unless told otherwise (~90 MB of float32 KV for a 135M
# model), or the context length when that is larger.
CPU_MAX_TOTAL_TOKENS = 4096
# modelyard's generic names (cal-model-mem -c / --parallel) and SGLang's own for the same thing.
GENERIC_NAMES = {"parallel": "max_running_requests"}
# The catalog names tool parsers as Xinference and vLLM do; SGLang registers some under other names.
CATALOG_TOOL_PARSERS = {"llama3_json": "llama3", "qwen3": "qwen25"}


def server_arg_names() -> frozenset[str]:
    """The keyword arguments of the installed SGLang's ``ServerArgs`` (imports sglang)."""
    from sglang.srt.server_args import ServerArgs

    return frozenset(
        name
        for name, param in inspect.signature(ServerArgs).parameters.items()
        if param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    )


def with_sglang_names(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the generic names renamed to SGLang's (SGLang's own name wins when both are
    set) and dashes read as underscores."""
    renamed = {k.replace("-", "_"): v for k, v in params.items() if k not in GENERIC_NAMES}
    for generic, name in GENERIC_NAMES.items():
        if generic in params:
            renamed.setdefault(name, params[generic])
    return renamed


def check_params(params: dict[str, Any], *, known: frozenset[str]) -> dict[str, Any]:
    """``params`` as SGLang arguments; an unknown or reserved name is an ``InvalidRequest`` that
    names it and its close matches."""
    checked: dict[str, Any] = {}
    for name, value in with_sglang_names(params).items():
        if name in RESERVED:
            raise InvalidRequest(
                f"SGLang argument {name!r} is set by modelyard (the model's resolved weights and "
                "its uid); leave it out of the launch parameters",
                param=name,
            )
        if name not in known:
            raise InvalidRequest(
                f"unknown SGLang engine argument {name!r}{did_you_mean(name, known)} (SGLang's "
                "ServerArgs fields are accepted, e.g. context_length, mem_fraction_static, "
                "max_total_tokens, max_running_requests, tp_size, dtype, quantization)",
                param=name,
            )
        checked[name] = value
    return checked


def apply_defaults(
    args: dict[str, Any], *, family: Family, path: Path, on_cpu: bool, served_name: str
) -> dict[str, Any]:
    """Fill what the user did not set: the weights and served name, embedding mode, the catalog's
    chat template and tool parser; on the CPU engine the CPU device, float32 (half precision gives
    wrong text on common CPUs), a capped KV pool and a scheduler that sleeps when idle."""
    filled = {"model_path": str(path), "served_model_name": served_name, **args}
    if family.model_type == "embedding":
        filled.setdefault("is_embedding", True)
    if isinstance(family, LLMFamily):
        if family.chat_template is not None:
            filled.setdefault("chat_template", family.chat_template)
        if family.tool_parser is not None and "tools" in family.model_ability:
            parser = CATALOG_TOOL_PARSERS.get(family.tool_parser, family.tool_parser)
            filled.setdefault("tool_call_parser", parser)
    if on_cpu:
        filled.setdefault("device", "cpu")
        filled.setdefault("dtype", "float32")
        context = filled.get("context_length")
        floor = context if isinstance(context, int) else 0
        filled.setdefault("max_total_tokens", max(CPU_MAX_TOTAL_TOKENS, floor))
        # An idle scheduler otherwise busy-polls its sockets: a core taken from everything else.
        filled.setdefault("sleep_on_idle", True)
    # SGLang's own processes log at "error" unless told: keep warnings, where it explains itself.
    filled.setdefault("log_level", "warning")
    return filled


def settle_tool_parser(args: dict[str, Any], *, chosen: bool, known: list[str]) -> None:
    """A tool parser the user chose and SGLang does not have fails the launch now, not the first
    request; one the catalog names and SGLang lacks is dropped (the runner then finds calls with
    modelyard's shared parser)."""
    name = args.get("tool_call_parser")
    if name is None or name in known:
        return
    if not chosen:
        del args["tool_call_parser"]
        return
    raise InvalidRequest(
        f"SGLang has no tool parser {name!r}{did_you_mean(str(name), known)} (it has: "
        f"{', '.join(sorted(known))})",
        param="tool_call_parser",
    )
