"""Memory estimate and auto GPU layers: against llama.cpp's own numbers for SmolLM2, and on
synthetic model shapes and hardware."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import modelyard_llamacpp as plugin
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.specs import Accelerator, Hardware, LLMFamily, ModelSource, ModelSpec
from modelyard_llamacpp.estimate import (
    GiB,
    MiB,
    ModelShape,
    Plan,
    bits_per_weight,
    compute_bytes,
    estimate,
    gpu_layers,
    kv_bytes,
)
from modelyard_llamacpp.gguf import read_gguf

CPU_ONLY = Hardware(
    system="linux", machine="x86_64", cpu_count=2, memory_total=24 * GiB, memory_available=20 * GiB
)


def gpu(free_gib: float, index: int = 0, kind: str = "cuda") -> Accelerator:
    free = int(free_gib * GiB)
    return Accelerator(
        kind=kind, index=index, name=f"GPU {index}", memory_total=free + GiB, memory_free=free
    )  # type: ignore[arg-type]


def synthetic_shape(
    n_layer: int = 32, layer_mib: int = 200, output_mib: int = 400, kv_heads: int = 8
) -> ModelShape:
    """An 8B-like model: 32 layers of 200 MiB, a 400 MiB output layer, 8 KV heads of 128 dims."""
    return ModelShape(
        architecture="llama",
        n_layer=n_layer,
        n_embd=4096,
        n_head=32,
        n_head_kv=(kv_heads,) * n_layer,
        key_dim=128,
        value_dim=128,
        n_ff=14336,
        n_vocab=128256,
        context_length=8192,
        layer_bytes=(layer_mib * MiB,) * n_layer,
        output_bytes=output_mib * MiB,
        weights=(n_layer * layer_mib + output_mib + 400) * MiB,
    )


@pytest.fixture(scope="module")
def smollm2(gguf_path: Path) -> ModelShape:
    return ModelShape.from_gguf(read_gguf(gguf_path))


# (n_ctx, n_parallel, n_ubatch, KV MiB, compute MiB) as llama.cpp logs them for SmolLM2-135M
# ("llama_kv_cache: size = ..." and "CPU compute buffer size = ..." with flash attention on).
LOGGED = [
    (2048, 1, 512, 45.00, 16.64),
    (512, 1, 512, 11.25, 15.14),
    (8192, 1, 512, 180.00, 22.64),
    (2048, 4, 512, 45.00, 15.14),
    (2048, 1, 256, 45.00, 8.32),
    (1000, 3, 512, 33.75, 15.17),
]


@pytest.mark.parametrize(("n_ctx", "n_parallel", "n_ubatch", "kv_mib", "compute_mib"), LOGGED)
def test_matches_llama_cpp_buffers(
    smollm2: ModelShape,
    n_ctx: int,
    n_parallel: int,
    n_ubatch: int,
    kv_mib: float,
    compute_mib: float,
) -> None:
    plan = Plan(n_ctx=n_ctx, n_parallel=n_parallel, n_ubatch=n_ubatch)
    assert kv_bytes(smollm2, plan) == pytest.approx(kv_mib * MiB, rel=1e-3)
    # The activations formula is a fit; 3% is well inside the estimate's purpose.
    assert compute_bytes(smollm2, plan) == pytest.approx(compute_mib * MiB, rel=0.03)


def test_without_flash_attention_the_score_matrix_counts(smollm2: ModelShape) -> None:
    plan = Plan(n_ctx=2048)
    slow = Plan(n_ctx=2048, flash_attn=False)
    # llama.cpp logs 47.51 MiB without flash attention: never under, at most 15% over.
    assert 47.51 * MiB <= compute_bytes(smollm2, slow) <= 1.15 * 47.51 * MiB
    assert compute_bytes(smollm2, slow) > compute_bytes(smollm2, plan)


def test_quantized_kv_cache_is_smaller(smollm2: ModelShape) -> None:
    f16 = kv_bytes(smollm2, Plan(n_ctx=2048))
    q8 = kv_bytes(smollm2, Plan(n_ctx=2048, cache_type_k=8, cache_type_v=8))
    assert q8 == pytest.approx(f16 * 34 / 64, rel=1e-6)


def test_no_gpu_means_no_layers() -> None:
    assert gpu_layers(synthetic_shape(), Plan(n_ctx=8192), ()) == 0


def test_ample_gpu_takes_every_layer_and_the_output() -> None:
    assert gpu_layers(synthetic_shape(), Plan(n_ctx=8192), (gpu(80),)) == 33


def test_small_gpu_takes_part_of_the_model() -> None:
    # 4 GiB free: minus 512 MiB driver reserve, ~0.3 GiB graph, 256 MiB margin; each layer is
    # 200 MiB of weights + 32 MiB of KV cache at 8192 cells.
    layers = gpu_layers(synthetic_shape(), Plan(n_ctx=8192), (gpu(4),))
    assert 0 < layers < 32
    per_layer = 200 * MiB + 8192 * 8 * 256 * 2
    space = 4 * GiB - 512 * MiB - compute_bytes(synthetic_shape(), Plan(n_ctx=8192)) - 256 * MiB
    assert layers == space // per_layer


def test_longer_context_leaves_room_for_fewer_layers() -> None:
    shape = synthetic_shape()
    short = gpu_layers(shape, Plan(n_ctx=4096), (gpu(6),))
    long = gpu_layers(shape, Plan(n_ctx=65536), (gpu(6),))
    assert long < short


def test_two_gpus_hold_more_than_one() -> None:
    shape = synthetic_shape()
    one = gpu_layers(shape, Plan(n_ctx=8192), (gpu(4),))
    two = gpu_layers(shape, Plan(n_ctx=8192), (gpu(4), gpu(4, index=1)))
    assert two > one


def test_gpu_too_small_for_a_layer() -> None:
    assert gpu_layers(synthetic_shape(), Plan(n_ctx=8192), (gpu(0.5),)) == 0


@given(
    free=st.lists(st.floats(0, 96), min_size=1, max_size=4),
    extra=st.floats(0, 32),
    n_layer=st.integers(1, 80),
    n_ctx=st.integers(256, 131072),
)
def test_more_free_memory_never_means_fewer_layers(
    free: list[float], extra: float, n_layer: int, n_ctx: int
) -> None:
    shape = synthetic_shape(n_layer=n_layer)
    plan = Plan(n_ctx=n_ctx)
    devices = tuple(gpu(f, index=i) for i, f in enumerate(free))
    richer = (gpu(free[0] + extra, index=0), *devices[1:])
    layers = gpu_layers(shape, plan, devices)
    assert 0 <= layers <= n_layer + 1
    assert gpu_layers(shape, plan, richer) >= layers


def test_estimate_places_layers(smollm2: ModelShape) -> None:
    plan = Plan(n_ctx=2048)
    on_cpu = estimate(smollm2, plan, 0)
    assert (on_cpu.device, on_cpu.gpu_layers, on_cpu.total_layers) == ("cpu", 0, 31)
    assert on_cpu.weights == smollm2.weights
    assert on_cpu.context_length == 2048
    split = estimate(smollm2, plan, 10)
    assert split.device == "split" and split.gpu_layers == 10
    assert any("10/31 layers on GPU" in note for note in split.notes)
    assert estimate(smollm2, plan, -1).device == "gpu"
    assert estimate(smollm2, plan, 999).gpu_layers == 31


def test_bits_per_weight_names() -> None:
    assert bits_per_weight("Q4_K_M") == 4.89
    assert bits_per_weight("q8_0") == 8.5
    assert bits_per_weight("IQ2_XXS") == 2.06
    assert bits_per_weight("model-Q5_K_S") == 5.54
    assert bits_per_weight("fancy") is None


def test_hook_reads_the_packaged_gguf(family: LLMFamily, spec: ModelSpec, gguf_path: Path) -> None:
    answer = plugin.estimate_resources(
        engine="llama.cpp",
        family=family,
        spec=spec,
        quantization="Q4_1",
        params={"n_ctx": 2048, "n_parallel": 1},
        hardware=CPU_ONLY,
    )
    assert answer is not None
    assert answer.weights == read_gguf(gguf_path).tensor_bytes
    assert answer.kv_cache == 45 * MiB
    assert (answer.device, answer.gpu_layers, answer.parallel) == ("cpu", 0, 1)


def test_hook_places_gpu_layers_or_takes_the_given_number(
    family: LLMFamily, spec: ModelSpec, gguf_path: Path
) -> None:
    with_gpu = Hardware(
        system="linux",
        machine="x86_64",
        cpu_count=8,
        memory_total=GiB,
        memory_available=GiB,
        accelerators=(gpu(8),),
    )
    auto = plugin.estimate_resources(
        engine="llama.cpp",
        family=family,
        spec=spec,
        quantization="Q4_1",
        params={},
        hardware=with_gpu,
    )
    assert auto is not None and (auto.device, auto.gpu_layers) == ("gpu", 31)
    given_layers = plugin.estimate_resources(
        engine="llama.cpp",
        family=family,
        spec=spec,
        quantization="Q4_1",
        params={"n_gpu_layers": 5},
        hardware=with_gpu,
    )
    assert given_layers is not None and (given_layers.device, given_layers.gpu_layers) == (
        "split",
        5,
    )


def test_hook_without_the_file_estimates_from_size(family: LLMFamily) -> None:
    remote = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=7,
        quantizations=("Q4_K_M",),
        sources=(
            ModelSource(
                hub="huggingface",
                model_id="nobody/none-GGUF",
                file_name_template="none.{quantization}.gguf",
            ),
        ),
    )
    answer = plugin.estimate_resources(
        engine="llama.cpp",
        family=family,
        spec=remote,
        quantization="Q4_K_M",
        params={},
        hardware=CPU_ONLY,
    )
    assert answer is not None
    assert answer.weights == int(7e9 * 4.89 / 8)
    assert any("rough estimate" in note for note in answer.notes)


def test_synthetic_file_through_the_shape(synthetic_gguf: Callable[..., Path]) -> None:
    shape = ModelShape.from_gguf(
        read_gguf(
            synthetic_gguf(n_layer=3, n_embd=128, n_head=4, n_head_kv=2, n_ff=256, n_vocab=500)
        )
    )
    assert (shape.n_layer, shape.key_dim, shape.n_head_kv, shape.n_vocab) == (3, 32, (2, 2, 2), 500)
    per_layer = 2 * (128 * 128 * 2 + 128 * 64 * 2 + 128 * 256 * 2)
    assert shape.layer_bytes == (per_layer,) * 3
    assert shape.output_bytes == 128 * 500 * 2 + 128 * 2
    # 256 cells x 3 layers x 2 heads x (32 + 32) dims x 2 bytes
    assert kv_bytes(shape, Plan(n_ctx=256)) == 256 * 3 * 2 * 64 * 2
