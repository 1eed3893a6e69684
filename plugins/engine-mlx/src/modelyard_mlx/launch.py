"""Load a model with mlx-lm in the runner: OpenBLAS first, then the weights, then the batch thread."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from modelyard.errors import LaunchError
from modelyard.specs import LLMFamily

from .batching import BatchEngine
from .model import MlxModel
from .openblas import preload
from .params import parse_params, thread_count

log = logging.getLogger("modelyard.mlx")


def read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LaunchError(f"{path} has no readable config.json for mlx-lm: {exc}") from None
    if not isinstance(config, dict):
        raise LaunchError(f"{path}/config.json is not a JSON object")
    return config


def model_overrides(config: dict[str, Any]) -> dict[str, Any]:
    """mlx-lm reads only a top-level ``rope_theta`` and otherwise assumes 10000, which garbles the
    text of models that keep it under ``rope_parameters`` (what transformers 5 writes)."""
    rope = config.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        return {"rope_theta": rope["rope_theta"]}
    return {}


def load(family: LLMFamily, params: dict[str, Any], path: Path) -> MlxModel:
    opts = parse_params(params)
    if not path.is_dir():
        raise LaunchError(f"MLX loads a model folder (config.json and safetensors), not {path}")
    config = read_config(path)
    threads = thread_count(opts.n_threads)
    blas = preload(threads)
    import mlx_lm

    try:
        model, tokenizer = mlx_lm.load(
            str(path),
            model_config=model_overrides(config),
            tokenizer_config={"trust_remote_code": opts.trust_remote_code},
            trust_remote_code=opts.trust_remote_code,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise LaunchError(f"mlx-lm cannot load {family.model_name}: {exc}") from None
    limit = config.get("max_position_embeddings") or family.context_length
    context_length = min(opts.context_length or family.context_length, int(limit))
    engine = BatchEngine(
        model,
        max_num_seqs=opts.max_num_seqs,
        prefill_batch_size=opts.prefill_batch_size,
        prefill_step_size=opts.prefill_step_size,
        max_kv_size=opts.max_kv_size,
        prompt_cache_size=opts.prompt_cache_size,
    )
    log.info(
        "loaded %s with mlx-lm (context %d, up to %d sequences per batch, BLAS: %s, %d thread%s)",
        path.name,
        context_length,
        opts.max_num_seqs,
        blas or "mlx's own",
        threads,
        "" if threads == 1 else "s",
    )
    return MlxModel(model, tokenizer, engine, family, context_length=context_length)
