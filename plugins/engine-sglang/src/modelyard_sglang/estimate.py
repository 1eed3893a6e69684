"""Memory SGLang will take for a spec: weights, the KV pool SGLang reserves up front, and its
processes (tokenizer manager, scheduler, detokenizer: each imports torch).

SGLang sizes its KV pool once, at start: on a GPU ``mem_fraction_static`` of each device less the
weights; on the CPU engine ``max_total_tokens`` tokens (modelyard's cap, see ``args``), whose bytes
per token come from the typical shape of a model of this size.
"""

from __future__ import annotations

from typing import Any

from modelyard.resources import (
    bits_per_weight,
    kv_cache_bytes,
    typical_shape,
    weight_bytes,
)
from modelyard.specs import EmbeddingFamily, Estimate, Family, Hardware, LLMFamily, ModelSpec

from .args import CPU_MAX_TOTAL_TOKENS, with_sglang_names

GiB = 1 << 30
# Measured on the CPU engine (SmolLM2-135M): ~3 GB RSS over four processes, weights excluded.
CPU_OVERHEAD = int(2.5 * GiB)
GPU_OVERHEAD = GiB
DEFAULT_MEM_FRACTION = 0.88


def _context(family: Family, params: dict[str, Any]) -> int | None:
    if isinstance(params.get("context_length"), int):
        return int(params["context_length"])
    if isinstance(family, LLMFamily):
        return family.context_length
    if isinstance(family, EmbeddingFamily):
        return family.max_tokens
    return None


def estimate(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
    *,
    on_cpu: bool,
) -> Estimate:
    params = with_sglang_names(params)
    dtype = str(params.get("dtype") or ("float32" if on_cpu else "auto"))
    bits = bits_per_weight(quantization, spec.model_format) if quantization != "none" else None
    if bits is None:
        bits = 32.0 if dtype in ("float32", "float") else 16.0
    weights = weight_bytes(spec.model_size_in_billions, bits)
    context = _context(family, params)
    parallel = params.get("max_running_requests")
    parallel = parallel if isinstance(parallel, int) and parallel > 0 else 1
    gpus = [a for a in hardware.accelerators if a.kind in ("cuda", "rocm")]
    if on_cpu or not gpus:
        tokens = params.get("max_total_tokens")
        if not isinstance(tokens, int):
            tokens = max(CPU_MAX_TOTAL_TOKENS, context or 0)
        layers, kv_heads, head_dim = typical_shape(spec.model_size_in_billions)
        kv = kv_cache_bytes(
            layers=layers, kv_heads=kv_heads, head_dim=head_dim, context=tokens,
            bytes_per_element=4 if bits == 32.0 else 2,
        )  # fmt: skip
        return Estimate(
            weights=weights,
            kv_cache=kv,
            overhead=CPU_OVERHEAD,
            device="cpu",
            context_length=context,
            parallel=parallel,
            notes=(f"SGLang's KV pool holds {tokens} tokens (max_total_tokens)",),
        )
    used = gpus[: int(params.get("tp_size") or 1)]
    fraction = float(params.get("mem_fraction_static") or DEFAULT_MEM_FRACTION)
    reserved = int(sum(a.memory_total for a in used) * fraction)
    return Estimate(
        weights=weights,
        kv_cache=max(reserved - weights, 0),
        overhead=GPU_OVERHEAD * len(used),
        device="gpu",
        context_length=context,
        parallel=parallel,
        notes=(f"SGLang reserves {fraction:.0%} of {len(used)} GPU(s) up front",),
    )
