"""What the machine has, and how much memory a model needs on it.

``probe_hardware`` reads the CPU count this process may use, RAM from ``/proc/meminfo`` (or sysconf),
CUDA devices from ``nvidia-smi`` when that binary exists, and Apple's Metal GPU from the platform.
The arithmetic (weights, KV cache, overhead) is shared by the engine plugins' ``estimate_resources``
hooks; ``estimate`` asks the owning plugin first and falls back to a generic estimate from the
family's size and a bits-per-weight table.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .errors import InvalidRequest, LaunchError
from .specs import Accelerator, Estimate, Family, Hardware, LLMFamily, ModelSpec

if TYPE_CHECKING:
    from collections.abc import Callable

    from .plugins import PluginManager

MiB = 1024**2
GiB = 1024**3

# Average bits per weight of a whole file, scales and mixed tensors included (llama.cpp's quantize
# table for GGUF; group-size-128 scales for GPTQ/AWQ "IntN"; mlx-lm's group-64 scales for "Nbit").
BITS_PER_WEIGHT: dict[str, float] = {
    "f32": 32, "fp32": 32, "float32": 32,
    "f16": 16, "fp16": 16, "float16": 16, "bf16": 16, "bfloat16": 16, "none": 16,
    "q8_0": 8.5, "q6_k": 6.56, "q5_1": 6.0, "q5_0": 5.5, "q5_k_m": 5.7, "q5_k_s": 5.55,
    "q4_1": 5.0, "q4_0": 4.55, "q4_k_m": 4.85, "q4_k_s": 4.58, "iq4_nl": 4.5, "iq4_xs": 4.25,
    "q3_k_l": 4.27, "q3_k_m": 3.91, "q3_k_s": 3.5, "iq3_m": 3.66, "iq3_s": 3.44, "iq3_xs": 3.3,
    "iq3_xxs": 3.06, "q2_k": 3.0, "q2_k_s": 2.7, "iq2_m": 2.7, "iq2_s": 2.5, "iq2_xs": 2.31,
    "iq2_xxs": 2.06, "iq1_m": 1.75, "iq1_s": 1.56,
    "int8": 8.25, "int4": 4.25, "int3": 3.25, "8-bit": 8.5, "4-bit": 4.5, "fp8": 8.25, "fp4": 4.5,
    "8bit": 8.5, "6bit": 6.5, "5bit": 5.5, "4bit": 4.5, "3bit": 3.5, "2bit": 2.5,
}  # fmt: skip

# (largest size in billions, layers, kv heads, head dim): typical GQA decoders, to guess the KV cache
# of a model whose engine gave no estimate (SmolLM2-135M, Qwen2.5-0.5B/1.5B/3B, Llama-3.1-8B, ...).
_TYPICAL_SHAPES: tuple[tuple[float, int, int, int], ...] = (
    (0.2, 30, 3, 64), (0.7, 24, 2, 64), (2.0, 28, 2, 128), (4.0, 36, 2, 128), (9.0, 32, 8, 128),
    (15.0, 48, 8, 128), (35.0, 64, 8, 128), (80.0, 80, 8, 128), (float("inf"), 126, 8, 128),
)  # fmt: skip


def probe_hardware() -> Hardware:
    system = _system()
    total, available = _memory()
    accelerators = _cuda_devices()
    machine = platform.machine().lower() or "unknown"
    if system == "darwin" and machine in ("arm64", "aarch64"):
        machine = "arm64"
        # Unified memory: the GPU shares RAM, so report RAM as its memory.
        accelerators = (Accelerator("metal", 0, "Apple Silicon GPU", total, available),)
    return Hardware(system, machine, cpu_count(), total, available, accelerators)


def _system() -> Literal["linux", "darwin", "windows"]:
    name = platform.system().lower()
    if name == "darwin":
        return "darwin"
    if name == "windows":
        return "windows"
    return "linux"


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def parse_meminfo(text: str) -> tuple[int, int]:
    """(MemTotal, MemAvailable) in bytes from /proc/meminfo text; available falls back to MemFree."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * 1024  # the kernel writes kB (KiB)
    total = values.get("MemTotal", 0)
    return total, values.get("MemAvailable", values.get("MemFree", total))


def _memory() -> tuple[int, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            total, available = parse_meminfo(handle.read())
        if total:
            return total, available
    except OSError:
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 0, 0
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError):
        available = total
    return total, available


NVIDIA_SMI_ARGS = (
    "--query-gpu=index,name,memory.total,memory.free",
    "--format=csv,noheader,nounits",
)


def parse_nvidia_smi(text: str) -> tuple[Accelerator, ...]:
    """Devices from ``nvidia-smi --query-gpu=index,name,memory.total,memory.free`` CSV (MiB)."""
    devices = []
    for line in text.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4:
            continue
        try:
            index, total, free = int(fields[0]), int(float(fields[2])), int(float(fields[3]))
        except ValueError:
            continue  # "[N/A]" on some boards: skip a device we cannot size
        devices.append(Accelerator("cuda", index, fields[1], total * MiB, free * MiB))
    return tuple(devices)


def _cuda_devices() -> tuple[Accelerator, ...]:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return ()
    try:
        done = subprocess.run(
            [binary, *NVIDIA_SMI_ARGS], capture_output=True, text=True, timeout=15, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()


def free_cores() -> int:
    """The cores actually free for an engine: this process's CPUs minus the 1-minute load, rounded,
    at most all but one, at least 1 (1 on a busy 2-core machine: spinning BLAS/OpenMP threads on
    cores others need run many times slower)."""
    cpus = cpu_count()
    try:
        busy = round(os.getloadavg()[0])
    except OSError:
        busy = 0
    return max(1, min(cpus - 1, cpus - busy))


def engine_threads(
    requested: int | None, env_name: str, default: Callable[[], int] = free_cores
) -> int:
    """An engine's thread count: the launch's ``n_threads``, else ``$env_name``, else ``default()``."""
    if requested is not None:
        if requested < 1:
            raise InvalidRequest(
                f"n_threads must be at least 1, got {requested}", param="n_threads"
            )
        return requested
    env = os.environ.get(env_name)
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise InvalidRequest(f"{env_name} must be a whole number, got {env!r}") from None
    return default()


def bits_per_weight(quantization: str, model_format: str = "pytorch") -> float | None:
    """Average bits per weight for a quantization name (case-insensitive), None when unknown."""
    key = quantization.strip().lower()
    if key in BITS_PER_WEIGHT:
        return float(BITS_PER_WEIGHT[key])
    if model_format in ("fp8", "fp4"):
        return float(BITS_PER_WEIGHT[model_format])
    return None


def weight_bytes(size_in_billions: float, bits_per_weight: float) -> int:
    return round(size_in_billions * 1e9 * bits_per_weight / 8)


def kv_cache_bytes(
    *,
    layers: int,
    kv_heads: int,
    head_dim: int,
    context: int,
    parallel: int = 1,
    bytes_per_element: float = 2,
) -> int:
    """Keys and values for ``parallel`` sequences of ``context`` tokens each (fp16: 2 bytes each)."""
    return round(2 * layers * kv_heads * head_dim * context * parallel * bytes_per_element)


def overhead_bytes(weights: int, *, device: str = "cpu") -> int:
    """Runtime overhead beyond weights and KV cache: the engine's libraries and compute buffers
    (a fixed base, a CUDA context on GPUs) plus activations, about a tenth of the weights."""
    base = 512 * MiB if device in ("gpu", "split") else 192 * MiB
    return base + weights // 10


def typical_shape(size_in_billions: float) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a typical decoder of this size."""
    for limit, layers, kv_heads, head_dim in _TYPICAL_SHAPES:
        if size_in_billions <= limit:
            return layers, kv_heads, head_dim
    raise AssertionError("unreachable: the last shape has no limit")


def _int_param(params: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = params.get(name)
        if value is not None:
            try:
                return int(value)
            except (TypeError, ValueError):
                raise LaunchError(
                    f"engine parameter {name!r} must be an integer, got {value!r}", param=name
                ) from None
    return None


def estimate(
    pm: PluginManager,
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate:
    """The owning plugin's estimate, or ``generic_estimate`` when it gives none."""
    answer = pm.call_owner(
        "estimate_resources",
        engine,
        family=family,
        spec=spec,
        quantization=quantization,
        params=params,
        hardware=hardware,
    )
    return (
        answer
        if answer is not None
        else generic_estimate(family, spec, quantization, params, hardware)
    )


def generic_estimate(
    family: Family, spec: ModelSpec, quantization: str, params: dict[str, Any], hardware: Hardware
) -> Estimate:
    """An engine-agnostic estimate from the size, the quantization's bits per weight, and the KV
    cache of a typical decoder of that size (``num_layers``/``num_kv_heads``/``head_dim`` params
    override the guess). Context: ``context_length``/``n_ctx``/``max_model_len`` or the family's."""
    notes: list[str] = []
    bits = bits_per_weight(quantization, spec.model_format)
    if bits is None:
        bits = 16.0
        notes.append(f"unknown quantization {quantization!r}: assumed 16 bits per weight")
    weights = weight_bytes(spec.model_size_in_billions, bits)
    device: Literal["cpu", "gpu"] = "gpu" if hardware.accelerators else "cpu"
    parallel = _int_param(params, "parallel", "n_parallel", "max_num_seqs") or 1
    kv = 0
    context: int | None = None
    if isinstance(family, LLMFamily):
        context = (
            _int_param(params, "context_length", "n_ctx", "max_model_len") or family.context_length
        )
        layers, kv_heads, head_dim = typical_shape(spec.model_size_in_billions)
        layers = _int_param(params, "num_layers") or layers
        kv_heads = _int_param(params, "num_kv_heads") or kv_heads
        head_dim = _int_param(params, "head_dim") or head_dim
        element = 4 if str(params.get("dtype", "")).lower() in ("float32", "fp32") else 2
        kv = kv_cache_bytes(
            layers=layers, kv_heads=kv_heads, head_dim=head_dim, context=context, parallel=parallel,
            bytes_per_element=element,
        )  # fmt: skip
        notes.append(
            f"KV cache for {layers} layers x {kv_heads} KV heads x {head_dim} dims (a typical model of this size)"
        )
    else:
        context = family.max_tokens
    return Estimate(
        weights=weights,
        kv_cache=kv,
        overhead=overhead_bytes(weights, device=device),
        device=device,
        context_length=context,
        parallel=parallel,
        notes=(*notes, "generic estimate: the engine gave none"),
    )


def check_fit(estimate: Estimate, hardware: Hardware) -> None:
    """Refuse (``LaunchError`` with the numbers) an estimate that cannot fit the memory it needs."""
    if estimate.device == "cpu":
        if hardware.memory_available and estimate.total > hardware.memory_available:
            raise LaunchError(
                f"not enough memory: the model needs about {human_bytes(estimate.total)} "
                f"({human_bytes(estimate.weights)} weights + {human_bytes(estimate.kv_cache)} KV cache + "
                f"{human_bytes(estimate.overhead)} overhead) but {human_bytes(hardware.memory_available)} "
                "is available; pick a smaller quantization or size, or lower the context length"
            )
        return
    if estimate.device == "gpu" and hardware.accelerators:
        free = max(device.memory_free for device in hardware.accelerators)
        if estimate.total > free:
            raise LaunchError(
                f"not enough GPU memory: the model needs about {human_bytes(estimate.total)} but the "
                f"largest free device has {human_bytes(free)}; pick a smaller quantization or size, "
                "lower the context length, or offload layers to the CPU"
            )


def times(estimate: Estimate, count: int) -> Estimate:
    """What ``count`` runners of ``estimate`` need together in this machine's memory (replicas).
    A GPU estimate is per device: replicas on GPUs take a device (``gpu_idx`` share) each."""
    if count == 1 or estimate.device != "cpu":
        return estimate
    return msgspec.structs.replace(
        estimate,
        weights=estimate.weights * count,
        kv_cache=estimate.kv_cache * count,
        overhead=estimate.overhead * count,
    )


def human_bytes(value: int) -> str:
    if value >= GiB:
        return f"{value / GiB:.2f} GiB"
    return f"{value / MiB:.1f} MiB"


def format_estimate(estimate: Estimate) -> str:
    """A readable breakdown, as ``modelyard cal-model-mem`` prints it."""
    kv_detail = ""
    if estimate.context_length is not None:
        kv_detail = f"  (context {estimate.context_length}, {estimate.parallel} parallel)"
    rows = [
        f"weights:  {human_bytes(estimate.weights):>12}",
        f"KV cache: {human_bytes(estimate.kv_cache):>12}{kv_detail}",
        f"overhead: {human_bytes(estimate.overhead):>12}",
        f"total:    {human_bytes(estimate.total):>12}",
    ]
    placement = f"device:   {estimate.device}"
    if estimate.gpu_layers is not None:
        of_total = f"/{estimate.total_layers}" if estimate.total_layers is not None else ""
        placement += f" ({estimate.gpu_layers}{of_total} layers on GPU)"
    rows.append(placement)
    rows.extend(f"note:     {note}" for note in estimate.notes)
    return "\n".join(rows)
