"""Registration, matching and estimates: pure logic, no model loaded."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import modelyard_transformers as plugin
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.specs import (
    Accelerator,
    EmbeddingFamily,
    Hardware,
    LLMFamily,
    ModelSource,
    ModelSpec,
    RerankFamily,
)
from modelyard_transformers.estimate import estimate
from modelyard_transformers.matching import SENTENCE_TRANSFORMERS, TRANSFORMERS, match_all

CPU = Hardware(
    system="linux", machine="x86_64", cpu_count=2, memory_total=24 << 30, memory_available=20 << 30
)
GPU = Hardware(
    system="linux",
    machine="x86_64",
    cpu_count=16,
    memory_total=128 << 30,
    memory_available=120 << 30,
    accelerators=(
        Accelerator(kind="cuda", index=0, name="H100", memory_total=80 << 30, memory_free=79 << 30),
    ),
)
FORMATS = ["pytorch", "ggufv2", "awq", "gptq", "fp4", "fp8", "bnb", "mlx"]
NOTHING_MISSING = {TRANSFORMERS: [], SENTENCE_TRANSFORMERS: []}


def spec(fmt: str = "pytorch", path: str = "/nowhere", size: float = 0.5) -> ModelSpec:
    return ModelSpec(
        model_format=fmt,  # type: ignore[arg-type]
        model_size_in_billions=size,
        quantizations=("none",),
        sources=(ModelSource(hub="local", model_id=path),),
    )


def llm(**kw: object) -> LLMFamily:
    kw.setdefault("model_ability", ("chat",))
    return LLMFamily(model_name="m", context_length=4096, model_specs=(spec(),), **kw)  # type: ignore[arg-type]


def embedder() -> EmbeddingFamily:
    return EmbeddingFamily(model_name="e", dimensions=8, max_tokens=16, model_specs=(spec(),))


def reranker(kind: str = "normal") -> RerankFamily:
    return RerankFamily(model_name="r", max_tokens=16, model_specs=(spec(),), type=kind)


def test_entry_point_and_cheap_registration() -> None:
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group="modelyard.engines")}
    assert eps.get("transformers") == "modelyard_transformers"
    code = (
        "import sys, modelyard_transformers as p; found = []; p.register_engines(found.append); "
        "print([e.name for e in found], 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['Transformers', 'sentence_transformers'] False False"


@given(
    fmt=st.sampled_from(FORMATS), quant=st.sampled_from(["none", "None", "Int4", "Q4_K_M", "8-bit"])
)
def test_only_unquantized_pytorch_is_accepted_and_every_no_has_a_reason(
    fmt: str, quant: str
) -> None:
    for family, engine in (
        (llm(), TRANSFORMERS),
        (embedder(), SENTENCE_TRANSFORMERS),
        (reranker(), SENTENCE_TRANSFORMERS),
    ):
        answers = {
            m.engine: m for m in match_all(family, spec(fmt), quant, CPU, missing=NOTHING_MISSING)
        }
        assert set(answers) == {TRANSFORMERS, SENTENCE_TRANSFORMERS}
        assert answers[engine].ok == (fmt == "pytorch" and quant.lower() == "none")
        assert all(m.ok or m.reason for m in answers.values())
        other = SENTENCE_TRANSFORMERS if engine == TRANSFORMERS else TRANSFORMERS
        assert not answers[other].ok


def test_refusals_say_what_to_do() -> None:
    no = match_all(llm(), spec("ggufv2"), "Q4_K_M", CPU, missing=NOTHING_MISSING)[0]
    assert "llama.cpp" in (no.reason or "")
    missing = {TRANSFORMERS: ["torch"], SENTENCE_TRANSFORMERS: ["sentence_transformers"]}
    answers = match_all(embedder(), spec(), "none", CPU, missing=missing)
    assert "pip install sentence-transformers" in (answers[1].reason or "")
    assert not match_all(
        llm(model_ability=("chat", "vision")), spec(), "none", CPU, missing=NOTHING_MISSING
    )[0].ok
    assert not match_all(
        llm(architectures=("T5ForConditionalGeneration",)),
        spec(),
        "none",
        CPU,
        missing=NOTHING_MISSING,
    )[0].ok
    assert match_all(
        llm(architectures=("Qwen2ForCausalLM",)), spec(), "none", GPU, missing=NOTHING_MISSING
    )[0].ok
    assert not match_all(reranker("LLM-based"), spec(), "none", CPU, missing=NOTHING_MISSING)[1].ok


def test_estimate_reads_the_kv_shape_from_config(tmp_path: Path) -> None:
    config = {
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "hidden_size": 576,
        "max_position_embeddings": 8192,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    family = llm()
    cpu = estimate(family, spec(path=str(tmp_path), size=0.135), {"max_num_seqs": 2}, CPU)
    assert cpu.weights == round(0.135e9 * 4)  # float32 on CPU
    assert cpu.kv_cache == 2 * 30 * 3 * 64 * 4096 * 2 * 4
    assert (cpu.device, cpu.context_length, cpu.parallel) == ("cpu", 4096, 2)
    gpu = estimate(family, spec(path=str(tmp_path), size=0.135), {"max_num_seqs": 2}, GPU)
    assert gpu.device == "gpu" and gpu.weights == round(0.135e9 * 2)  # bf16
    guessed = estimate(family, spec(size=0.135), {}, CPU)
    assert any("guessed" in note for note in guessed.notes)
    assert estimate(embedder(), spec(size=0.022), {}, CPU).kv_cache == 0


def test_wrong_engine_for_the_model_type_is_a_launch_error() -> None:
    from modelyard.errors import LaunchError

    with pytest.raises(LaunchError, match="sentence_transformers"):
        plugin.load_model(
            engine="Transformers",
            family=embedder(),
            spec=spec(),
            quantization="none",
            params={},
            path=Path("/x"),
        )


def test_threads_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard import resources
    from modelyard_transformers.params import default_threads, thread_count

    assert 1 <= default_threads() <= max(1, len(__import__("os").sched_getaffinity(0)) - 1)
    assert thread_count(None, resources.cpu_count) == resources.cpu_count()
    monkeypatch.setenv("MODELYARD_TORCH_THREADS", "3")
    assert thread_count(None) == 3
    assert thread_count(None, resources.cpu_count) == 3
    assert thread_count(2) == 2


def test_encoders_default_to_every_core_and_generation_to_the_free_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("torch", reason="configure_torch sets torch's threads")
    import torch
    from modelyard import resources
    from modelyard_transformers.params import (
        LLMParams,
        SentenceParams,
        configure_torch,
        parse_params,
    )

    before = torch.get_num_threads()
    monkeypatch.delenv("MODELYARD_TORCH_THREADS", raising=False)
    monkeypatch.setattr(resources, "cpu_count", lambda: 7)
    monkeypatch.setattr(resources, "free_cores", lambda: 3)
    try:
        assert configure_torch(parse_params({}, SentenceParams))[2] == 7
        assert configure_torch(parse_params({}, LLMParams))[2] == 3
        assert configure_torch(parse_params({"n_threads": 2}, SentenceParams))[2] == 2
    finally:
        torch.set_num_threads(before)


def test_generic_parameter_names_are_aliases_and_the_engine_names_win() -> None:
    from modelyard_transformers.params import LLMParams, parse_params

    assert parse_params({"parallel": 3}, LLMParams).max_num_seqs == 3
    assert parse_params({"parallel": 3, "max_num_seqs": 5}, LLMParams).max_num_seqs == 5
    assert parse_params({"torch_dtype": "float32"}, LLMParams).dtype == "float32"
