"""Memory to serve a spec on these engines: weights at the chosen dtype, plus the KV cache.

The KV cache is the worst case of the scheduler: ``max_num_seqs`` rows, each at the full context.
Its shape (layers, KV heads, head size) comes from the model's config.json when the weights are
already on disk (a local folder, or the Hugging Face cache; never a download), else from the
typical shape of a decoder of that size, which the estimate's notes then say.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard.resources import kv_cache_bytes, overhead_bytes, typical_shape, weight_bytes
from modelyard.specs import Estimate, Family, Hardware, LLMFamily, ModelSpec, Placement

from .params import LLMParams, SentenceParams, parse_params

_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


def cached_config(spec: ModelSpec) -> dict[str, Any] | None:
    """config.json of the spec if it is already on this machine."""
    for source in spec.sources:
        path: str | Path | None = None
        if source.hub == "local":
            path = Path(source.model_id) / "config.json"
        elif source.hub == "huggingface":
            try:
                from huggingface_hub import try_to_load_from_cache

                found = try_to_load_from_cache(
                    source.model_id, "config.json", revision=source.revision
                )
            except Exception:  # an odd id or cache layout only costs us the exact shape
                found = None
            path = found if isinstance(found, str) else None
        if path and Path(path).is_file():
            try:
                config = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                continue
            return config.get("text_config") or config
    return None


def _kv_shape(config: dict[str, Any]) -> tuple[int, int, int] | None:
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or int(config["hidden_size"]) // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return layers, kv_heads, head_dim


def estimate(
    family: Family, spec: ModelSpec, params: dict[str, Any], hardware: Hardware
) -> Estimate:
    is_llm = isinstance(family, LLMFamily)
    opts = parse_params(params, LLMParams if is_llm else SentenceParams)
    on_gpu = hardware.has("cuda") and (opts.device == "auto" or opts.device.startswith("cuda"))
    dtype = opts.dtype if opts.dtype != "auto" else ("bfloat16" if on_gpu else "float32")
    per_weight = _BYTES[dtype]
    weights = weight_bytes(spec.model_size_in_billions, per_weight * 8)
    device: Placement = "gpu" if on_gpu else "cpu"
    notes = [f"{dtype} weights on {device}"]
    if not is_llm:
        return Estimate(
            weights, 0, overhead_bytes(weights, device=device), device=device, notes=tuple(notes)
        )

    config = cached_config(spec)
    context = opts.context_length or family.context_length  # type: ignore[union-attr]
    shape = _kv_shape(config) if config else None
    if config and config.get("max_position_embeddings"):
        context = min(context, int(config["max_position_embeddings"]))
    if shape is None:
        shape = typical_shape(spec.model_size_in_billions)
        notes.append(
            "KV cache shape guessed from the model size (config.json not on this machine yet)"
        )
    layers, kv_heads, head_dim = shape
    kv = kv_cache_bytes(
        layers=layers,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context=context,
        parallel=opts.max_num_seqs,
        bytes_per_element=per_weight,
    )
    notes.append(f"KV cache: {opts.max_num_seqs} sequences x {context} tokens at most")
    return Estimate(
        weights,
        kv,
        overhead_bytes(weights, device=device),
        device=device,
        total_layers=layers,
        context_length=context,
        parallel=opts.max_num_seqs,
        notes=tuple(notes),
    )
