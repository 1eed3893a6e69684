"""A model family read from the weights themselves, for a launch without a catalog entry.

A Hugging Face folder tells its architecture, context length and quantization in ``config.json``,
its size in the ``safetensors`` headers (counted, never loaded), its chat template in
``tokenizer_config.json`` or ``chat_template.jinja``, and whether it is a sentence-transformers
embedder (``modules.json``) or a cross-encoder (a one-label sequence classifier). A GGUF file tells
the same in its header. The result is an ordinary family with one spec, so every engine answers
``match_engine`` for it as for a catalog model, and it can be saved as a registration.
"""

from __future__ import annotations

import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from .errors import LaunchError
from .specs import (
    EmbeddingFamily,
    Family,
    LLMFamily,
    ModelFormat,
    ModelSource,
    ModelSpec,
    ModelType,
    RerankFamily,
)

DEFAULT_CONTEXT = 2048
# config.json keys that hold the context length, by model lineage.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx")
# Hugging Face quantization methods (config.json quantization_config.quant_method) → our formats.
_QUANT_FORMATS: dict[str, ModelFormat] = {
    "awq": "awq",
    "gptq": "gptq",
    "fp8": "fp8",
    "bitsandbytes": "bnb",
    "mxfp4": "fp4",
}
# llama.cpp's llama_ftype (general.file_type) → the quantization name files and catalogs use.
GGUF_FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16",
}  # fmt: skip
# GGUF general.architecture → the Hugging Face architecture engines check support by.
_GGUF_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
}
_QUANT_IN_NAME = re.compile(r"(?i)(?:^|[.\-_])((?:I?Q\d_[A-Z0-9_]+?)|F16|F32|BF16)(?=\.gguf$)")


def describe_weights(
    path: Path, *, name: str, source: ModelSource, model_type: ModelType | None = None
) -> tuple[Family, ModelSpec, str]:
    """The family (named ``name``), its one spec (fetched from ``source``) and its quantization
    for the weights at ``path`` (a GGUF file, or a folder with config.json). ``model_type``
    overrides what the weights suggest."""
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _from_gguf(path, name, source)
    folder = path if path.is_dir() else path.parent
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise LaunchError(
            f"{path} is neither a GGUF file nor a folder with a config.json; point at the model's "
            "folder (Hugging Face layout) or at its .gguf file",
            param="model_name",
        )
    config = _json(config_path)
    return _from_config(folder, config, name, source, model_type)


def _from_config(
    folder: Path,
    config: dict[str, Any],
    name: str,
    source: ModelSource,
    model_type: ModelType | None,
) -> tuple[Family, ModelSpec, str]:
    inner = config.get("text_config")
    text: dict[str, Any] = inner if isinstance(inner, dict) else config
    architectures = tuple(a for a in config.get("architectures") or () if isinstance(a, str))
    context = next((text[k] for k in _CONTEXT_KEYS if isinstance(text.get(k), int)), None)
    quant = config.get("quantization_config") or {}
    method = str(quant.get("quant_method") or "").lower()
    model_format: ModelFormat = _QUANT_FORMATS.get(method, "pytorch")
    quantization = "none"
    if model_format != "pytorch":
        bits = quant.get("bits") or (4 if quant.get("load_in_4bit") else 8)
        quantization = f"Int{bits}" if model_format in ("awq", "gptq", "bnb") else model_format
    spec = ModelSpec(
        model_format=model_format,
        model_size_in_billions=_billions(_safetensors_parameters(folder), folder),
        quantizations=(quantization,),
        sources=(source,),
    )
    kind = model_type or _kind(folder, config, architectures)
    common: dict[str, Any] = {
        "model_name": name,
        "model_description": f"read from {source.hub} {source.model_id}",
        "model_specs": (spec,),
        "architectures": architectures,
    }
    family: Family
    if kind == "embedding":
        family = EmbeddingFamily(
            **common,
            dimensions=int(text.get("hidden_size") or text.get("d_model") or 1),
            max_tokens=_sentence_max_tokens(folder) or context or 512,
        )
    elif kind == "rerank":
        family = RerankFamily(**common, max_tokens=context or 512)
    else:
        chat = _has_chat_template(folder)
        family = LLMFamily(
            **common,
            model_ability=("chat", "generate") if chat else ("generate",),
            context_length=context or DEFAULT_CONTEXT,
        )
    return family, spec, quantization


def _kind(folder: Path, config: dict[str, Any], architectures: tuple[str, ...]) -> ModelType:
    if (folder / "modules.json").is_file() or (
        folder / "config_sentence_transformers.json"
    ).is_file():
        return "embedding"
    labels = config.get("id2label") or {}
    if any(a.endswith("ForSequenceClassification") for a in architectures) and len(labels) <= 1:
        return "rerank"
    return "LLM"


def _from_gguf(path: Path, name: str, source: ModelSource) -> tuple[Family, ModelSpec, str]:
    from .gguf import read_gguf

    header = read_gguf(path)
    arch = str(header.get("general.architecture") or "")
    context = header.get(f"{arch}.context_length")
    quantization = GGUF_FILE_TYPES.get(header.get("general.file_type", -1)) or _quant_from_name(
        path.name
    )
    parameters = sum(math.prod(t.shape) for t in header.tensors)
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=_billions(parameters, path),
        quantizations=(quantization,),
        sources=(source,),
    )
    chat = bool(header.get("tokenizer.chat_template"))
    family = LLMFamily(
        model_name=name,
        model_description=f"read from {source.hub} {source.model_id}",
        model_specs=(spec,),
        architectures=(_GGUF_ARCHITECTURES[arch],) if arch in _GGUF_ARCHITECTURES else (),
        model_ability=("chat", "generate") if chat else ("generate",),
        context_length=context if isinstance(context, int) and context > 0 else DEFAULT_CONTEXT,
    )
    return family, spec, quantization


def _quant_from_name(file_name: str) -> str:
    found = _QUANT_IN_NAME.search(file_name)
    return found.group(1).upper() if found else "unknown"


def _billions(parameters: int, where: Path) -> float:
    if parameters <= 0:
        raise LaunchError(
            f"cannot tell the size of the model at {where}: no safetensors weights (or an empty "
            "GGUF) found; convert it to safetensors or GGUF",
            param="model_name",
        )
    return float(f"{parameters / 1e9:.3g}")  # as catalogs write it: 0.135, not 0.134515008


def _safetensors_parameters(folder: Path) -> int:
    """Parameters counted from each ``*.safetensors`` header (8-byte length, then JSON)."""
    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                continue
            (length,) = struct.unpack("<Q", raw)
            if length > 100 * 1024 * 1024:  # a corrupt length: refuse rather than allocate
                raise LaunchError(
                    f"{file} has an implausible safetensors header; download it again"
                )
            header = json.loads(handle.read(length) or b"{}")
        for key, tensor in header.items():
            if key != "__metadata__" and isinstance(tensor, dict):
                total += math.prod(tensor.get("shape") or [1])
    return total


def _has_chat_template(folder: Path) -> bool:
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    tokenizer = folder / "tokenizer_config.json"
    return tokenizer.is_file() and bool(_json(tokenizer).get("chat_template"))


def _sentence_max_tokens(folder: Path) -> int | None:
    found = folder / "sentence_bert_config.json"
    value = _json(found).get("max_seq_length") if found.is_file() else None
    return value if isinstance(value, int) and value > 0 else None


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LaunchError(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}
