"""Conditions Xinference's seeds state alike for the engines that load Hugging Face weights on their
own kernels (vLLM, SGLang): which weight formats and quantizations, and the family's architectures
against the engine's supported list. Each plugin's rule adds its own device conditions; the
refusals name the engine and say what to change.
"""

from __future__ import annotations

from collections.abc import Set
from pathlib import Path

from .specs import Family, ModelFormat, ModelSpec

AWQ_QUANTIZATIONS = ("Int4",)
GPTQ_QUANTIZATIONS = ("Int3", "Int4", "Int8")


def format_reason(
    engine: str, formats: tuple[ModelFormat, ...], spec: ModelSpec, quantization: str
) -> str | None:
    """Why ``engine`` cannot load ``spec`` at ``quantization``, or None: ``formats`` only; pytorch
    only unquantized, awq only Int4, gptq only Int3/Int4/Int8."""
    fmt = spec.model_format
    if fmt not in formats:
        hint = "; GGUF weights run on llama.cpp" if fmt == "ggufv2" else ""
        return f"{engine} serves {'/'.join(formats)} weights, not {fmt}{hint}"
    if fmt == "pytorch" and quantization != "none":
        return (
            f"{engine} serves pytorch weights only unquantized (quantization 'none'), not "
            f"{quantization!r}; pick an awq, gptq or fp8 spec for quantized weights"
        )
    if fmt == "awq" and quantization not in AWQ_QUANTIZATIONS:
        return f"{engine} serves awq weights only at Int4, not {quantization!r}"
    if fmt == "gptq" and quantization not in GPTQ_QUANTIZATIONS:
        return (
            f"{engine} serves gptq weights only at {'/'.join(GPTQ_QUANTIZATIONS)}, not "
            f"{quantization!r}"
        )
    return None


def architecture_reason(
    engine: str, family: Family, architectures: Set[str], where: str
) -> str | None:
    """Why none of the family's architectures is in ``architectures`` (``where`` says whose list)."""
    if not family.architectures:
        return (
            f"model {family.model_name} declares no architectures, so {engine} support cannot be "
            'checked; add its config.json "architectures" to the registration'
        )
    if any(name in architectures for name in family.architectures):
        return None
    return (
        f"architecture {', '.join(family.architectures)} of {family.model_name} is not supported "
        f"by {engine}, per {where}"
    )


def read_name_list(path: Path) -> frozenset[str]:
    """A shipped list of names, one per line; ``#`` starts a comment line."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))
