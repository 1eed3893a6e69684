"""Memory arithmetic for llama.cpp: weights, KV cache, compute buffers, and GPU layer placement.

The numbers follow what llama.cpp allocates (checked against its own log lines for SmolLM2-135M,
see tests/test_estimate.py):

- weights: the tensor bytes of the GGUF (memory-mapped on CPU, copied to VRAM for offloaded layers);
- KV cache: for each layer, cells x kv_heads x (key_dim x bytes(type_k) + value_dim x bytes(type_v)).
  Each of the n_parallel slots gets ``n_ctx / n_parallel`` cells rounded up to 256 (a unified cache
  has ``n_ctx`` cells rounded up), so the KV cache follows ``n_ctx`` in total, not per slot;
- compute buffer: the activations of one micro-batch, ``n_ubatch x (3 n_ff + 5 n_embd) x 4`` bytes,
  plus the attention mask over one slot's cells (f16), plus, without flash attention, the
  ``n_head x n_ubatch x cells`` f32 score matrix;
- logits: ``n_vocab x 4`` bytes per slot; plus a fixed 16 MiB for vocabulary, threads and the HTTP core.

GPU layers are placed the way Ollama's ``EstimateGPULayers`` does: per device, free memory minus a
driver reserve, the compute graph and a safety margin of one layer; then layers greedily, each with
its weights and its share of the KV cache; the output layer last, counting as one more layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from modelyard.specs import Accelerator, Estimate, Placement

from .gguf import GGML_TYPES, GGUFFile

MiB = 1 << 20
GiB = 1 << 30
BASE_OVERHEAD = 16 * MiB
# CUDA/ROCm context plus cuBLAS/hipBLAS workspaces (Ollama reserves ~457 MiB per CUDA device).
DRIVER_RESERVE = {"cuda": 512 * MiB, "rocm": 512 * MiB, "metal": 0}
SAFETY_MARGIN = 256 * MiB
CTX_PAD = 256
F16 = 1


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs from a GGUF, per repeating layer where the model varies by layer."""

    architecture: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]
    key_dim: int
    value_dim: int
    n_ff: int
    n_vocab: int
    context_length: int
    layer_bytes: tuple[int, ...]
    output_bytes: int
    weights: int
    pooling_type: int | None = None

    @classmethod
    def from_gguf(cls, gguf: GGUFFile) -> ModelShape:
        arch = str(gguf.get("general.architecture", "llama"))

        def key(name: str, default: Any = None) -> Any:
            return gguf.get(f"{arch}.{name}", default)

        n_layer = int(key("block_count", 0))
        n_embd = int(key("embedding_length", 0))
        n_head = _per_layer_max(key("attention.head_count", 1)) or 1
        kv = key("attention.head_count_kv", n_head)
        n_head_kv = tuple(int(v) for v in kv) if isinstance(kv, list) else (int(kv),) * n_layer
        vocab = gguf.get("tokenizer.ggml.tokens")
        n_vocab = getattr(vocab, "length", None) or (
            len(vocab) if isinstance(vocab, list) else int(key("vocab_size", 0))
        )
        layer_bytes = [0] * n_layer
        named: dict[str, int] = {}
        for tensor in gguf.tensors:
            layer = tensor.layer
            if layer is not None and layer < n_layer:
                layer_bytes[layer] += tensor.nbytes
            else:
                named[tensor.name] = tensor.nbytes
        # Tied embeddings: llama.cpp uses token_embd as the output matrix (a copy when offloaded).
        output = named.get("output.weight", named.get("token_embd.weight", 0)) + named.get(
            "output_norm.weight", 0
        )
        return cls(
            architecture=arch,
            n_layer=n_layer,
            n_embd=n_embd,
            n_head=n_head,
            n_head_kv=n_head_kv,
            key_dim=int(key("attention.key_length", n_embd // n_head)),
            value_dim=int(key("attention.value_length", n_embd // n_head)),
            n_ff=_per_layer_max(key("feed_forward_length", 4 * n_embd)),
            n_vocab=n_vocab,
            context_length=int(key("context_length", 0)),
            layer_bytes=tuple(layer_bytes),
            output_bytes=output,
            weights=gguf.tensor_bytes,
            pooling_type=key("pooling_type"),
        )


@dataclass(frozen=True)
class Plan:
    """The launch settings that decide memory (llama.cpp's names and defaults)."""

    n_ctx: int
    n_parallel: int = 1
    n_ubatch: int = 512
    kv_unified: bool = False
    cache_type_k: int = F16
    cache_type_v: int = F16
    flash_attn: bool = True

    @property
    def slot_context(self) -> int:
        """Tokens one request may use: its slot's share of n_ctx, rounded up as llama.cpp does."""
        share = self.n_ctx if self.kv_unified else self.n_ctx // self.n_parallel
        return _pad(max(share, 1))

    @property
    def cells(self) -> int:
        return _pad(self.n_ctx) if self.kv_unified else self.slot_context * self.n_parallel


def _pad(n: int) -> int:
    return -(-n // CTX_PAD) * CTX_PAD


def _per_layer_max(value: Any) -> int:
    return max(int(v) for v in value) if isinstance(value, list) and value else int(value or 0)


def _type_bytes(ggml_type: int) -> float:
    _, block, size = GGML_TYPES.get(ggml_type, GGML_TYPES[F16])
    return size / block


def kv_layer_bytes(shape: ModelShape, plan: Plan, layer: int) -> int:
    per_cell = shape.n_head_kv[layer] * (
        shape.key_dim * _type_bytes(plan.cache_type_k)
        + shape.value_dim * _type_bytes(plan.cache_type_v)
    )
    return int(plan.cells * per_cell)


def kv_bytes(shape: ModelShape, plan: Plan) -> int:
    return sum(kv_layer_bytes(shape, plan, layer) for layer in range(shape.n_layer))


def compute_bytes(shape: ModelShape, plan: Plan) -> int:
    ubatch = plan.n_ubatch
    kv_span = plan.cells if plan.kv_unified else plan.slot_context
    activations = 4 * ubatch * (3 * shape.n_ff + 5 * shape.n_embd)
    mask = 2 * ubatch * kv_span
    scores = 0 if plan.flash_attn else 4 * ubatch * kv_span * shape.n_head
    return activations + mask + scores


def logits_bytes(shape: ModelShape, plan: Plan) -> int:
    return 4 * shape.n_vocab * plan.n_parallel


def gpu_layers(shape: ModelShape, plan: Plan, accelerators: tuple[Accelerator, ...]) -> int:
    """How many layers to offload (llama.cpp's n_gpu_layers; n_layer + 1 includes the output layer)."""
    if not accelerators or shape.n_layer == 0:
        return 0
    per_layer = [
        shape.layer_bytes[i] + kv_layer_bytes(shape, plan, i) for i in range(shape.n_layer)
    ]
    graph = compute_bytes(shape, plan)
    margin = max(SAFETY_MARGIN, max(per_layer))
    devices = sorted(accelerators, key=lambda a: a.memory_free, reverse=True)
    space = [
        max(0, d.memory_free - DRIVER_RESERVE.get(d.kind, 512 * MiB) - graph - margin)
        for d in devices
    ]
    placed, device = 0, 0
    for size in per_layer:
        while device < len(space) and space[device] < size:
            device += 1
        if device == len(space):
            return placed
        space[device] -= size
        placed += 1
    if any(room >= shape.output_bytes for room in space[device:]):
        placed += 1
    return placed


def estimate(
    shape: ModelShape, plan: Plan, n_gpu_layers: int, *, notes: tuple[str, ...] = ()
) -> Estimate:
    kv = kv_bytes(shape, plan)
    total_layers = shape.n_layer + 1
    offloaded = total_layers if n_gpu_layers < 0 else min(n_gpu_layers, total_layers)
    placement: Placement = (
        "cpu" if offloaded == 0 else "gpu" if offloaded == total_layers else "split"
    )
    overhead = compute_bytes(shape, plan) + logits_bytes(shape, plan) + BASE_OVERHEAD
    if offloaded:
        on_gpu = sum(shape.layer_bytes[shape.n_layer - min(offloaded, shape.n_layer) :])
        on_gpu += shape.output_bytes if offloaded == total_layers else 0
        notes = (
            *notes,
            f"{offloaded}/{total_layers} layers on GPU: {on_gpu // MiB} MiB of weights in VRAM",
        )
    return Estimate(
        weights=shape.weights,
        kv_cache=kv,
        overhead=overhead,
        device=placement,
        gpu_layers=offloaded,
        total_layers=total_layers,
        context_length=plan.slot_context,
        parallel=plan.n_parallel,
        notes=notes,
    )


# Approximate bits per weight of llama.cpp's quantization presets (llama-quantize's table).
BITS_PER_WEIGHT = {
    "IQ1_S": 1.56,
    "IQ1_M": 1.75,
    "IQ2_XXS": 2.06,
    "IQ2_XS": 2.31,
    "IQ2_S": 2.5,
    "IQ2_M": 2.7,
    "Q2_K": 2.96,
    "IQ3_XXS": 3.06,
    "IQ3_XS": 3.3,
    "IQ3_S": 3.44,
    "Q3_K_S": 3.5,
    "IQ3_M": 3.66,
    "Q3_K_M": 3.91,
    "Q3_K": 3.91,
    "Q3_K_L": 4.27,
    "IQ4_XS": 4.25,
    "IQ4_NL": 4.5,
    "Q4_0": 4.55,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.89,
    "Q4_K": 4.89,
    "Q4_1": 5.0,
    "Q5_0": 5.54,
    "Q5_K_S": 5.54,
    "Q5_K_M": 5.69,
    "Q5_K": 5.69,
    "Q5_1": 6.0,
    "Q6_K": 6.56,
    "Q8_0": 8.5,
    "BF16": 16.0,
    "F16": 16.0,
    "FP16": 16.0,
    "F32": 32.0,
    "FP32": 32.0,
}


def bits_per_weight(quantization: str) -> float | None:
    name = re.sub(r"[^A-Z0-9_]", "_", quantization.upper())
    if name in BITS_PER_WEIGHT:
        return BITS_PER_WEIGHT[name]
    for known in sorted(BITS_PER_WEIGHT, key=len, reverse=True):
        if re.search(rf"(^|_){known}(_|$)", name):
            return BITS_PER_WEIGHT[known]
    return None


def estimate_from_size(
    size_in_billions: float, quantization: str, plan: Plan, accelerators: tuple[Accelerator, ...]
) -> Estimate:
    """A rough estimate when the GGUF is not on disk: weights from size and bits per weight, KV from
    a typical grouped-query model (about 16 KiB per token per billion parameters, at least 8 KiB)."""
    bits = bits_per_weight(quantization)
    notes = ["rough estimate from the model size: the GGUF is not downloaded yet"]
    if bits is None:
        bits = 16.0
        notes.append(f"unknown quantization {quantization!r}: assumed 16 bits per weight")
    weights = int(size_in_billions * 1e9 * bits / 8)
    kv = int(plan.cells * max(16 * 1024 * size_in_billions, 8 * 1024))
    overhead = BASE_OVERHEAD + 4 * plan.n_ubatch * 64 * 1024 + int(weights * 0.02)
    free = sum(a.memory_free for a in accelerators)
    placement: Placement = "cpu"
    if accelerators:
        reserve = sum(DRIVER_RESERVE.get(a.kind, 512 * MiB) for a in accelerators) + SAFETY_MARGIN
        placement = "gpu" if weights + kv + overhead + reserve <= free else "split"
    return Estimate(
        weights=weights,
        kv_cache=kv,
        overhead=overhead,
        device=placement,
        context_length=plan.slot_context,
        parallel=plan.n_parallel,
        notes=tuple(notes),
    )
