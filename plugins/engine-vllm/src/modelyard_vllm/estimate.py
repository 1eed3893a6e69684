"""Memory vLLM will take for a spec: weights at their stored precision plus the KV cache vLLM reserves.

vLLM does not grow its KV cache on demand: on a GPU it claims ``gpu_memory_utilization`` of each
device up front, on the CPU build ``kv_cache_memory_bytes`` (modelyard's default 1 GiB). So the
estimate is what vLLM will reserve, not what a given context needs.
"""

from __future__ import annotations

from typing import Any

from modelyard.specs import (
    EmbeddingFamily,
    Estimate,
    Family,
    Hardware,
    LLMFamily,
    ModelSpec,
    RerankFamily,
)

from .args import CPU_KV_CACHE_BYTES, with_vllm_names

GiB = 1 << 30
# Bytes per parameter of quantized formats (group scales included, roughly).
_QUANTIZED_BYTES = {"Int3": 0.42, "Int4": 0.56, "Int8": 1.06}
_FORMAT_BYTES = {"fp8": 1.0, "fp4": 0.56, "bnb": 0.56}
_DTYPE_BYTES = {"float32": 4.0, "float": 4.0, "float16": 2.0, "half": 2.0, "bfloat16": 2.0}
# Python, torch and vLLM's engine-core process before any weight is loaded.
CPU_OVERHEAD = GiB
GPU_OVERHEAD = GiB // 2


def bytes_per_parameter(spec: ModelSpec, quantization: str, dtype: str, on_cpu: bool) -> float:
    if spec.model_format in ("gptq", "awq"):
        return _QUANTIZED_BYTES.get(quantization, 0.56)
    if spec.model_format in _FORMAT_BYTES:
        return _FORMAT_BYTES[spec.model_format]
    # pytorch: vLLM's "auto" dtype is the checkpoint's (16-bit, usually); modelyard's CPU default is float32.
    return _DTYPE_BYTES.get(dtype, 4.0 if on_cpu else 2.0)


def _context(family: Family, params: dict[str, Any]) -> int | None:
    if isinstance(params.get("max_model_len"), int):
        return int(params["max_model_len"])
    if isinstance(family, LLMFamily):
        return family.context_length
    if isinstance(family, EmbeddingFamily | RerankFamily):
        return family.max_tokens
    return None


def _parallel(params: dict[str, Any]) -> int:
    seqs = params.get("max_num_seqs")
    return seqs if isinstance(seqs, int) and seqs > 0 else 1


def estimate(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
    *,
    on_cpu: bool,
) -> Estimate:
    params = with_vllm_names(params)
    dtype = str(params.get("dtype") or ("float32" if on_cpu else "auto"))
    weights = int(
        spec.model_size_in_billions * 1e9 * bytes_per_parameter(spec, quantization, dtype, on_cpu)
    )
    explicit_kv = params.get("kv_cache_memory_bytes")
    gpus = [a for a in hardware.accelerators if a.kind == "cuda"]
    if on_cpu or not gpus:
        kv = int(explicit_kv) if isinstance(explicit_kv, int) else CPU_KV_CACHE_BYTES
        return Estimate(
            weights=weights,
            kv_cache=kv,
            overhead=CPU_OVERHEAD,
            device="cpu",
            context_length=_context(family, params),
            parallel=_parallel(params),
        )
    tp = int(params.get("tensor_parallel_size") or 1)
    used = gpus[:tp]
    if isinstance(explicit_kv, int):
        kv = explicit_kv * len(used)
    else:
        utilization = float(params.get("gpu_memory_utilization") or 0.9)
        reserved = int(sum(a.memory_total for a in used) * utilization)
        kv = max(reserved - weights - GPU_OVERHEAD * len(used), 0)
    notes = (f"vLLM reserves its KV cache up front on {len(used)} CUDA device(s)",)
    return Estimate(
        weights=weights,
        kv_cache=kv,
        overhead=GPU_OVERHEAD * len(used),
        device="gpu",
        context_length=_context(family, params),
        parallel=_parallel(params),
        notes=notes,
    )
