"""Launch parameters of the MLX engine, checked before anything loads.

``n_threads`` is OpenBLAS's thread count (mlx[cpu] does its matrix products there): by default the
cores actually free (CPU count minus the 1-minute load), at least 1; ``MODELYARD_MLX_THREADS`` sets it
for every launch.
"""

from __future__ import annotations

from typing import Any

import msgspec
from modelyard import resources
from modelyard.errors import InvalidRequest, did_you_mean


class MlxParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    context_length: int | None = None  # default: the family's, capped by the model's config
    max_num_seqs: int = 8  # sequences decoded together (BatchGenerator's completion batch)
    prefill_batch_size: int = 8  # prompts prefilled together
    prefill_step_size: int = 2048  # prompt tokens per prefill step
    max_kv_size: int | None = None  # a rotating KV cache of this many tokens per sequence
    prompt_cache_size: int = 10  # finished sequences whose KV cache is kept for reuse (0: none)
    n_threads: int | None = None
    trust_remote_code: bool = False


# Other names for ours (modelyard's generic ones, cal-model-mem's); ours win when both are set.
_ALIASES = {
    "parallel": "max_num_seqs",
    "n_ctx": "context_length",
    "max_model_len": "context_length",
}


def parse_params(params: dict[str, Any]) -> MlxParams:
    """``params`` as ``MlxParams``; an unknown name is a 400 naming its close matches."""
    renamed = {k: v for k, v in params.items() if k not in _ALIASES}
    for alias, name in _ALIASES.items():
        if alias in params:
            renamed.setdefault(name, params[alias])
    known = MlxParams.__struct_fields__
    for name in renamed:
        if name not in known:
            hint = did_you_mean(name, known) or f"; known: {', '.join(sorted(known))}"
            raise InvalidRequest(f"unknown MLX engine parameter {name!r}{hint}", param=name)
    try:
        parsed = msgspec.convert(renamed, MlxParams)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid MLX engine parameter: {exc}") from None
    for name in ("max_num_seqs", "prefill_batch_size", "prefill_step_size", "n_threads"):
        value = getattr(parsed, name)
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1, got {value}", param=name)
    return parsed


def thread_count(requested: int | None) -> int:
    return resources.engine_threads(requested, "MODELYARD_MLX_THREADS")
