"""Can SGLang run this spec here? The eligibility rule, pure: everything it reads is an argument.

The rule follows Xinference's seed for SGLang, beside vLLM's: pytorch/gptq/awq/fp8 weights and the
other formats SGLang's quantization methods load (bitsandbytes, fp4); pytorch only unquantized, awq
only Int4, gptq only Int3/Int4/Int8; Linux with a CUDA or ROCm device for SGLang's CUDA build, or
SGLang installed for its CPU engine; an architecture in SGLang's model registry. The CPU engine runs
unquantized weights only (its quantized kernels need CUDA). Every refusal says what to change.
"""

from __future__ import annotations

from collections.abc import Set

from modelyard.seed_rules import architecture_reason, format_reason
from modelyard.specs import (
    AcceleratorKind,
    EngineInfo,
    Family,
    Hardware,
    Match,
    ModelFormat,
    ModelSpec,
    ModelType,
)

from .install import INSTALL_HINT, ArchitectureSource, SglangInstall

ENGINE = "SGLang"
FORMATS: tuple[ModelFormat, ...] = ("pytorch", "gptq", "awq", "fp8", "bnb", "fp4")
MODEL_TYPES: tuple[ModelType, ...] = ("LLM", "embedding")
GPU_KINDS: tuple[AcceleratorKind, ...] = ("cuda", "rocm")

_SOURCE_WORDS: dict[ArchitectureSource, str] = {
    "sglang-registry": "SGLang's model registry",
    "sglang-source": "SGLang's model registry",
    "shipped-list": "the architecture list shipped with modelyard-engine-sglang (SGLang is not installed)",
}


def engine_info(install: SglangInstall) -> EngineInfo:
    return EngineInfo(
        name=ENGINE,
        model_types=MODEL_TYPES,
        abilities=("chat", "generate", "embed", "tools"),
        formats=FORMATS,
        library="sglang",
        library_version=install.version,
        available=install.installed,
        unavailable_reason=None
        if install.installed
        else f"SGLang is not installed: {INSTALL_HINT}",
    )


def _device_reason(spec: ModelSpec, hardware: Hardware, install: SglangInstall) -> str | None:
    if hardware.system != "linux":
        return f"SGLang runs on Linux only; this host runs {hardware.system}"
    if not install.installed:
        return f"SGLang is not installed: {INSTALL_HINT}"
    if install.build == "cuda" and not any(hardware.has(kind) for kind in GPU_KINDS):
        found = ", ".join(sorted({a.kind for a in hardware.accelerators})) or "none"
        return (
            f"the installed SGLang {install.version} is the CUDA build and this host has no CUDA or "
            f"ROCm device (accelerators found: {found}); `modelyard env install SGLang` builds one "
            "for SGLang's CPU engine"
        )
    if install.build == "cpu" and spec.model_format != "pytorch":
        return (
            f"SGLang's CPU engine serves unquantized pytorch weights only, not {spec.model_format} "
            "(its quantized kernels need a CUDA device)"
        )
    return None


def _architecture_reason(
    family: Family, install: SglangInstall, architectures: Set[str], source: ArchitectureSource
) -> str | None:
    where = _SOURCE_WORDS[source]
    if source != "shipped-list" and install.version:
        where = f"{where} (sglang {install.version})"
    return architecture_reason(ENGINE, family, architectures, where)


def match(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    *,
    install: SglangInstall,
    architectures: Set[str],
    source: ArchitectureSource,
) -> Match:
    """SGLang's answer for ``spec`` at ``quantization`` on ``hardware``; the first failing condition
    gives the reason (model type, format, quantization, OS, library, device, architecture)."""
    if family.model_type not in MODEL_TYPES:
        return Match.no(
            ENGINE, f"the SGLang plugin serves LLM and embedding models, not {family.model_type}"
        )
    reason = (
        format_reason(ENGINE, FORMATS, spec, quantization)
        or _device_reason(spec, hardware, install)
        or _architecture_reason(family, install, architectures, source)
    )
    return Match.no(ENGINE, reason) if reason else Match.yes(ENGINE)
