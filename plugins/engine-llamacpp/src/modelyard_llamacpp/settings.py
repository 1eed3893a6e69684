"""Launch parameters -> the llama.cpp settings to apply, with modelyard's defaults. Pure: no xllamacpp.

Parameters are llama.cpp ``common_params`` field names, nested with dots (``sampling.top_k``) or as
nested dicts (``{"sampling": {"top_k": 20}}``), plus a few friendly aliases. Defaults:

- ``n_parallel`` = 4 slots, so that concurrent requests are batched.
- ``n_ctx`` is llama.cpp's total context, shared by the slots (each gets ``n_ctx / n_parallel``, rounded
  up to 256). Default: 4096 tokens per slot, or less when the model's context is shorter, times
  ``n_parallel`` (as Ollama does), so that a request can use 4096 tokens whatever the parallelism.
  Embedding and rerank models get their own maximum input length per slot.
- threads: what the host can really use (``default_threads``), overridable with the ``n_threads``
  parameter or the ``MODELYARD_LLAMACPP_THREADS`` environment variable.
- ``fit_params`` off: modelyard places GPU layers itself (``estimate.gpu_layers``) and llama.cpp's own
  fitting loads the model twice. ``cache_ram_mib`` 512 instead of llama.cpp's 8192, so that an idle
  server's prompt cache cannot grow by 8 GiB unannounced. ``verbosity`` 0: warnings and errors only.
  llama.cpp's embedded HTTP server is the loader's business (``loader.lock_http``), never a parameter's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidRequest
from modelyard.specs import Ability, EmbeddingFamily, Family, LLMFamily, RerankFamily

from .estimate import F16, ModelShape, Plan
from .gguf import GGML_TYPES

ALIASES: dict[str, tuple[str, ...]] = {
    "n_threads": ("cpuparams.n_threads", "cpuparams_batch.n_threads"),
    "n_threads_batch": ("cpuparams_batch.n_threads",),
    "n_ctx": ("n_ctx",),
    "n_parallel": ("n_parallel",),
    # modelyard's generic name for requests served at once (cal-model-mem --parallel).
    "parallel": ("n_parallel",),
    "n_gpu_layers": ("n_gpu_layers",),
    "embedding": ("embedding",),
}
DEFAULT_PARALLEL = 4
DEFAULT_SLOT_CONTEXT = 4096
THREADS_ENV = "MODELYARD_LLAMACPP_THREADS"
POOLING_MEAN, POOLING_RANK = 1, 4
LLM_ABILITIES: tuple[Ability, ...] = ("chat", "generate", "tools", "reasoning", "vision")


@dataclass(frozen=True)
class Settings:
    assignments: dict[str, Any]  # dotted common_params name -> value
    plan: Plan
    abilities: tuple[Ability, ...]
    gpu_layers_given: bool

    @property
    def context_length(self) -> int:
        return self.plan.slot_context


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sampling": {"top_k": 5}}`` -> ``{"sampling.top_k": 5}``; aliases expanded."""
    flat: dict[str, Any] = {}
    for name, value in params.items():
        dotted = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{dotted}."))
        else:
            for target in ALIASES.get(dotted, (dotted,)):
                flat[target] = value
    return flat


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def default_threads(
    env: Mapping[str, str] | None = None, *, cpus: int | None = None, load: float | None = None
) -> int:
    """Threads for llama.cpp: the env override, else usable CPUs minus those busy elsewhere (1-minute
    load average), keeping one core free for the server on small hosts. OpenMP threads spin while
    waiting, so on 2 shared cores 2 threads run 5-20x slower than 1: there the answer is 1."""
    env = os.environ if env is None else env
    if env.get(THREADS_ENV):
        try:
            value = int(env[THREADS_ENV])
        except ValueError:
            value = 0
        if value < 1:
            raise InvalidRequest(
                f"{THREADS_ENV}={env[THREADS_ENV]!r} must be a positive whole number of threads"
            )
        return value
    cpus = usable_cpus() if cpus is None else cpus
    load = os.getloadavg()[0] if load is None else load
    keep_free = 1 if cpus <= 4 else 0
    return max(1, cpus - max(keep_free, int(load)))


def _positive_int(flat: dict[str, Any], name: str, meaning: str) -> int | None:
    value = flat.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(
            f"{name} must be a positive whole number ({meaning}), got {value!r}", param=name
        )
    return value


def ggml_type_id(value: Any, param: str) -> int:
    """A KV cache type given as a ggml type id or name ("f16", "q8_0")."""
    if isinstance(value, int) and not isinstance(value, bool) and value in GGML_TYPES:
        return value
    if isinstance(value, str):
        name = value.upper().removeprefix("GGML_TYPE_")
        for type_id, (known, _, _) in GGML_TYPES.items():
            if known == name:
                return type_id
    names = ", ".join(sorted(known.lower() for known, _, _ in GGML_TYPES.values()))
    raise InvalidRequest(f"{param}={value!r} is not a ggml type; use one of: {names}", param=param)


def _flash_attn(value: Any) -> bool:
    """flash_attn_type: -1/"auto" and 1/"on"/"enabled" use flash attention; 0/"off"/"disabled" do not."""
    return str(value).lower().rsplit("_", 1)[-1] not in ("0", "off", "disabled", "false")


def resolve(
    family: Family,
    params: Mapping[str, Any],
    shape: ModelShape,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Validate the launch parameters that decide memory and fill in the defaults."""
    # llama.cpp's own names win over modelyard's generic ones (parallel, context_length).
    flat = flatten(
        {k: v for k, v in params.items() if not (k == "parallel" and "n_parallel" in params)}
    )
    # The generic context_length is what one request may use: one slot's share of n_ctx.
    per_request = _positive_int(flat, "context_length", "the tokens one request may use")
    flat.pop("context_length", None)
    n_parallel = _positive_int(flat, "n_parallel", "the number of requests served at once")
    n_ctx = _positive_int(
        flat, "n_ctx", "the total tokens of context, shared by the n_parallel slots"
    )
    n_parallel = n_parallel or DEFAULT_PARALLEL
    if n_ctx is None and per_request is not None:
        n_ctx = per_request * n_parallel
    rerank = isinstance(family, RerankFamily) or shape.pooling_type == POOLING_RANK
    pooled = rerank or isinstance(family, EmbeddingFamily)
    model_ctx = shape.context_length or math.inf
    if n_ctx is None:
        if isinstance(family, LLMFamily):
            per_slot = min(DEFAULT_SLOT_CONTEXT, family.context_length)
        else:
            per_slot = family.max_tokens
        n_ctx = int(min(per_slot, model_ctx)) * n_parallel
    if n_parallel > n_ctx:
        raise InvalidRequest(
            f"n_parallel={n_parallel} is larger than n_ctx={n_ctx}: each slot gets n_ctx / n_parallel tokens "
            "of context; raise n_ctx or lower n_parallel",
            param="n_parallel",
        )
    defaults: dict[str, Any] = {
        "n_ctx": n_ctx,
        "n_parallel": n_parallel,
        "fit_params": False,
        "cache_ram_mib": 512,
        "verbosity": 0,
    }
    if isinstance(family, LLMFamily) and family.chat_template:
        defaults["chat_template"] = family.chat_template  # the catalog's, as Xinference does
    if not ("cpuparams.n_threads" in flat and "cpuparams_batch.n_threads" in flat):
        threads = default_threads(env)
        defaults["cpuparams.n_threads"] = threads
        defaults["cpuparams_batch.n_threads"] = threads
    slot = Plan(
        n_ctx=n_ctx, n_parallel=n_parallel, kv_unified=bool(flat.get("kv_unified", False))
    ).slot_context
    if pooled:
        defaults["embedding"] = True
        # Embedding and rerank models see a whole input in one micro-batch.
        defaults["n_batch"] = defaults["n_ubatch"] = max(512, slot)
    if rerank:
        defaults["pooling_type"] = POOLING_RANK
    elif (pooled or flat.get("embedding")) and shape.pooling_type is None:
        defaults["pooling_type"] = (
            POOLING_MEAN  # llama.cpp's "none" pooling cannot answer /v1/embeddings
        )
    assignments = {**defaults, **flat}
    plan = Plan(
        n_ctx=n_ctx,
        n_parallel=n_parallel,
        n_ubatch=_positive_int(assignments, "n_ubatch", "tokens per micro-batch") or 512,
        kv_unified=bool(assignments.get("kv_unified", False)),
        cache_type_k=ggml_type_id(assignments.get("cache_type_k", F16), "cache_type_k"),
        cache_type_v=ggml_type_id(assignments.get("cache_type_v", F16), "cache_type_v"),
        flash_attn=_flash_attn(assignments.get("flash_attn_type", -1)),
    )
    return Settings(
        assignments, plan, _abilities(family, assignments, rerank, pooled), "n_gpu_layers" in flat
    )


def _abilities(
    family: Family, assignments: dict[str, Any], rerank: bool, pooled: bool
) -> tuple[Ability, ...]:
    if rerank:
        return ("rerank",)
    if pooled:
        return ("embed",)
    found: list[Ability] = [a for a in family.model_ability if a in LLM_ABILITIES]
    if "vision" in found and not assignments.get("mmproj.path"):
        found.remove("vision")  # images need the projector GGUF (mmproj.path)
    if "generate" not in found:
        found.append("generate")
    if assignments.get("embedding"):
        found.append("embed")
    return tuple(found)


def plan_from_params(family: Family, params: Mapping[str, Any], shape: ModelShape | None) -> Plan:
    """The memory plan for an estimate, tolerant of parameters it does not need."""
    stand_in = shape or ModelShape("unknown", 0, 0, 1, (), 0, 0, 0, 0, 0, (), 0, 0)
    flat = {
        k: v
        for k, v in flatten(params).items()
        if not k.startswith(("cpuparams", "cpuparams_batch"))
    }
    return resolve(family, flat, stand_in, env={THREADS_ENV: "1"}).plan
