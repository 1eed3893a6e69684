"""Memory MLX needs for a spec: the weights as stored (the safetensors' sizes when the folder is on
this machine, else size x the quantization's bits) plus the KV cache of ``parallel`` sequences at
the full context (mlx-lm grows its cache as sequences grow: this is the most it takes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelyard import resources
from modelyard.errors import ModelyardError
from modelyard.specs import Estimate, Family, Hardware, LLMFamily, ModelSpec

from .params import MlxParams, parse_params


def local_folder(spec: ModelSpec, quantization: str) -> Path | None:
    """The spec's folder when it is here already (a local source, or the Hugging Face cache)."""
    from modelyard import hub

    for source in spec.sources:
        if source.hub == "local":
            try:
                path = hub.resolve(spec, quantization, hub="local")
            except ModelyardError:
                continue
            if path.is_dir():
                return path
        elif source.hub == "huggingface":
            try:
                from huggingface_hub import try_to_load_from_cache
            except ImportError:
                continue
            found = try_to_load_from_cache(source.model_id, "config.json", revision=source.revision)
            if isinstance(found, str):
                return Path(found).parent
    return None


def _shape(config: dict[str, Any]) -> tuple[int, int, int] | None:
    config = config.get("text_config", config)
    try:
        layers = int(config["num_hidden_layers"])
        heads = int(config["num_attention_heads"])
        kv_heads = int(config.get("num_key_value_heads") or heads)
        head_dim = int(config.get("head_dim") or config["hidden_size"] // heads)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return layers, kv_heads, head_dim


def estimate(
    family: Family, spec: ModelSpec, quantization: str, params: dict[str, Any], hardware: Hardware
) -> Estimate | None:
    if not isinstance(family, LLMFamily):
        return None
    opts: MlxParams = parse_params(params)
    notes: list[str] = []
    folder = local_folder(spec, quantization)
    config: dict[str, Any] = {}
    if folder is not None:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            config = {}
    files = sorted(folder.glob("*.safetensors")) if folder is not None else []
    if files:
        weights = sum(f.stat().st_size for f in files)
        notes.append(f"weights: the {len(files)} safetensors file(s) in {files[0].parent.name}")
    else:
        bits = resources.bits_per_weight(quantization, spec.model_format) or 16.0
        weights = resources.weight_bytes(spec.model_size_in_billions, bits)
        notes.append(f"weights: {spec.model_size_in_billions}B parameters at {bits} bits")
    shape = _shape(config) or resources.typical_shape(spec.model_size_in_billions)
    if not config:
        notes.append("KV cache for a typical model of this size (its config.json is not here)")
    context = opts.context_length or family.context_length
    # The cache holds activations in the model's float type; quantized models compute in 16 bits.
    dtype = str(config.get("torch_dtype") or config.get("dtype") or "")
    element = 4 if dtype == "float32" and "quantization" not in config else 2
    layers, kv_heads, head_dim = shape
    kv = resources.kv_cache_bytes(
        layers=layers, kv_heads=kv_heads, head_dim=head_dim, context=context,
        parallel=opts.max_num_seqs, bytes_per_element=element,
    )  # fmt: skip
    notes.append("MLX grows its KV cache with the sequences: this is its most")
    return Estimate(
        weights=weights,
        kv_cache=kv,
        overhead=resources.overhead_bytes(weights),
        # Apple Silicon: unified memory that Metal draws on; elsewhere mlx[cpu] uses RAM.
        device="gpu" if hardware.has("metal") else "cpu",
        context_length=context,
        parallel=opts.max_num_seqs,
        notes=tuple(notes),
    )
