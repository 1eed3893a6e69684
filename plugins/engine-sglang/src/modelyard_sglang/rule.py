"""Can SGLang run this spec here? The eligibility rule, pure: everything it reads is an argument.

The rule follows Xinference's seed for SGLang, beside vLLM's: pytorch/gptq/awq/fp8 weights and the
other formats SGLang's quantization methods load (bitsandbytes, fp4); pytorch only unquantized, awq
only Int4, gptq only Int3/Int4/Int8; Linux with a CUDA or ROCm device for SGLang's CUDA build, or
SGLang installed for its CPU engine; an architecture in SGLang's model registry. The CPU engine runs
unquantized weights only (its quantized kernels need CUDA). Every refusal says what to change.
"""

from __future__ import annotations

from modelyard.engine_library import LibraryFacts, library_engine_info
from modelyard.seed_rules import format_reason
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

from .install import INSTALL_HINT, SglangInstall

ENGINE = "SGLang"
PLUGIN = "modelyard-engine-sglang"
FORMATS: tuple[ModelFormat, ...] = ("pytorch", "gptq", "awq", "fp8", "bnb", "fp4")
MODEL_TYPES: tuple[ModelType, ...] = ("LLM", "embedding")
GPU_KINDS: tuple[AcceleratorKind, ...] = ("cuda", "rocm")


def engine_info(install: SglangInstall) -> EngineInfo:
    return library_engine_info(
        ENGINE,
        "sglang",
        install,
        model_types=MODEL_TYPES,
        formats=FORMATS,
        install_hint=INSTALL_HINT,
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


def match(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    facts: LibraryFacts[SglangInstall],
) -> Match:
    """SGLang's answer for ``spec`` at ``quantization`` on ``hardware``, judged by ``facts`` (the
    build and architectures of the environment SGLang runs in); the first failing condition gives
    the reason (model type, format, quantization, OS, library, device, architecture)."""
    if family.model_type not in MODEL_TYPES:
        return Match.no(
            ENGINE, f"the SGLang plugin serves LLM and embedding models, not {family.model_type}"
        )
    reason = (
        format_reason(ENGINE, FORMATS, spec, quantization)
        or _device_reason(spec, hardware, facts.install)
        or facts.architecture_reason(ENGINE, family, PLUGIN, "sglang")
    )
    return Match.no(ENGINE, reason) if reason else Match.yes(ENGINE)
