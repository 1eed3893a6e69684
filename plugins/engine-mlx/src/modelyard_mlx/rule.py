"""Can MLX run this spec here? The matching rule, pure: everything it reads is an argument.

The seeds: on Apple Silicon MLX is the first choice for ``mlx`` specs and also serves pytorch
safetensors folders (mlx-lm loads them directly). On Linux ``mlx[cpu]`` serves the same specs, slowly;
the core's engine order ranks it after llama.cpp and Transformers there, so it is chosen only when
asked for by name. Other systems, Intel Macs, GGUF and other formats: no, saying what to use instead.
"""

from __future__ import annotations

from modelyard.specs import EngineInfo, Family, Hardware, LLMFamily, Match, ModelFormat, ModelSpec

from .install import MlxInstall

ENGINE = "MLX"
FORMATS: tuple[ModelFormat, ...] = ("mlx", "pytorch")
# mlx-community names its quantized repositories by bits; "none" is the unquantized weights.
QUANTIZATIONS = ("none", "3bit", "4bit", "6bit", "8bit", "bf16", "fp16")


def engine_info(install: MlxInstall, system: str) -> EngineInfo:
    reason = install.missing(system)
    return EngineInfo(
        name=ENGINE,
        model_types=("LLM",),
        abilities=("chat", "generate", "tools"),
        formats=FORMATS,
        library="mlx-lm",
        library_version=install.mlx_lm,
        available=reason is None,
        unavailable_reason=reason,
    )


def _platform_reason(hardware: Hardware) -> str | None:
    if hardware.is_apple_silicon or hardware.system == "linux":
        return None
    if hardware.system == "darwin":
        return f"MLX needs Apple Silicon (arm64); this Mac is {hardware.machine}: use llama.cpp"
    return f"MLX runs on macOS with Apple Silicon and on Linux (mlx[cpu]), not {hardware.system}"


def _format_reason(spec: ModelSpec, quantization: str) -> str | None:
    fmt = spec.model_format
    if fmt not in FORMATS:
        hint = "; GGUF weights run on llama.cpp" if fmt == "ggufv2" else ""
        return (
            f"MLX serves mlx weights and pytorch safetensors folders, not {fmt}{hint}: "
            "pick an mlx or pytorch spec of this model"
        )
    if fmt == "pytorch" and quantization.lower() != "none":
        return (
            f"MLX loads pytorch weights unquantized (quantization 'none'), not {quantization!r}; "
            "pick an mlx spec (4bit, 8bit) for quantized weights"
        )
    if fmt == "mlx" and quantization.lower() not in QUANTIZATIONS:
        return f"MLX knows the quantizations {', '.join(QUANTIZATIONS)}, not {quantization!r}"
    return None


def match(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware, install: MlxInstall
) -> Match:
    """MLX's answer; the first failing condition gives the reason (model type, vision, format,
    platform, library)."""
    if not isinstance(family, LLMFamily):
        return Match.no(
            ENGINE, f"the MLX plugin serves LLMs (mlx-lm), not {family.model_type} models"
        )
    if "vision" in family.model_ability:
        return Match.no(
            ENGINE,
            f"{family.model_name} is a vision model; mlx-lm serves text-only LLMs: use Transformers or vLLM",
        )
    reason = (
        _format_reason(spec, quantization)
        or _platform_reason(hardware)
        or install.missing(hardware.system)
    )
    return Match.no(ENGINE, reason) if reason else Match.yes(ENGINE)
