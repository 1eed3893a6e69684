"""MLX's matching rule, for every format, quantization, platform and MLX install; plus where the
core ranks MLX. Needs no mlx: the rule is pure and the install is an argument."""

from __future__ import annotations

import typing

from hypothesis import given
from hypothesis import strategies as st
from modelyard.matching import rank
from modelyard.specs import (
    Accelerator,
    EmbeddingFamily,
    Family,
    Hardware,
    LLMFamily,
    Match,
    ModelFormat,
    ModelSource,
    ModelSpec,
)
from modelyard_mlx.install import MlxInstall
from modelyard_mlx.rule import ENGINE, QUANTIZATIONS, engine_info, match

ALL_FORMATS: tuple[str, ...] = typing.get_args(ModelFormat)
ALL_QUANTIZATIONS = (*QUANTIZATIONS, "4BIT", "Int4", "Q4_K_M", "fp8", "2bit")
FULL = MlxInstall(mlx="0.32.4", mlx_lm="0.32.2", mlx_cpu="0.32.4")
INSTALLS = (
    MlxInstall(),
    MlxInstall(mlx="0.32.4"),
    MlxInstall(mlx="0.32.4", mlx_lm="0.32.2"),  # macOS style: no CPU backend distribution
    FULL,
)
HOSTS = (
    Hardware("linux", "x86_64", 2, 24 << 30, 20 << 30),
    Hardware(
        "darwin",
        "arm64",
        8,
        16 << 30,
        12 << 30,
        (Accelerator("metal", 0, "M2", 16 << 30, 12 << 30),),
    ),
    Hardware("darwin", "x86_64", 8, 16 << 30, 12 << 30),
    Hardware("windows", "AMD64", 8, 16 << 30, 12 << 30),
)


def spec(fmt: str, quantization: str = "none") -> ModelSpec:
    return ModelSpec(fmt, 0.135, (quantization or "none",), (ModelSource("local", "/models/x"),))  # type: ignore[arg-type]


def llm(fmt: str = "mlx", abilities: tuple[str, ...] = ("chat",)) -> LLMFamily:
    return LLMFamily(
        model_name="smollm2",
        model_specs=(spec(fmt),),
        model_ability=abilities,  # type: ignore[arg-type]
        context_length=8192,
    )


EMBEDDING = EmbeddingFamily(
    model_name="minilm", dimensions=384, max_tokens=256, model_specs=(spec("pytorch"),)
)


@given(
    family=st.sampled_from([llm(), llm(abilities=("chat", "vision")), EMBEDDING]),
    fmt=st.sampled_from(ALL_FORMATS),
    quantization=st.sampled_from(ALL_QUANTIZATIONS),
    hardware=st.sampled_from(HOSTS),
    install=st.sampled_from(INSTALLS),
)
def test_yes_exactly_when_every_rule_holds_and_every_no_says_why(
    family: Family, fmt: str, quantization: str, hardware: Hardware, install: MlxInstall
) -> None:
    answer = match(family, spec(fmt, quantization), quantization, hardware, install)
    assert answer.engine == ENGINE
    expected = (
        isinstance(family, LLMFamily)
        and "vision" not in family.model_ability
        and (
            (fmt == "mlx" and quantization.lower() in QUANTIZATIONS)
            or (fmt == "pytorch" and quantization.lower() == "none")
        )
        and (hardware.is_apple_silicon or hardware.system == "linux")
        and install.mlx is not None
        and install.mlx_lm is not None
        and (hardware.system != "linux" or install.mlx_cpu is not None)
    )
    assert answer.ok == expected
    if not answer.ok:
        assert answer.reason and len(answer.reason) > 20
    # Deterministic: the same question, the same answer.
    assert match(family, spec(fmt, quantization), quantization, hardware, install) == answer


@given(hardware=st.sampled_from(HOSTS), install=st.sampled_from(INSTALLS))
def test_a_missing_library_says_how_to_install_it_for_the_platform(
    hardware: Hardware, install: MlxInstall
) -> None:
    answer = match(llm(), spec("mlx", "4bit"), "4bit", hardware, install)
    if answer.ok or not (hardware.is_apple_silicon or hardware.system == "linux"):
        return
    assert "modelyard env install MLX" in (answer.reason or "")
    wanted = "pip install mlx mlx-lm" if hardware.system == "darwin" else 'pip install "mlx[cpu]"'
    assert wanted in (answer.reason or "")


def test_refusals_name_what_to_do_instead() -> None:
    linux = HOSTS[0]
    gguf = match(llm("ggufv2"), spec("ggufv2", "Q4_K_M"), "Q4_K_M", linux, FULL)
    assert not gguf.ok and "llama.cpp" in (gguf.reason or "")
    quantized = match(llm("pytorch"), spec("pytorch", "Int4"), "Int4", linux, FULL)
    assert not quantized.ok and "pick an mlx spec" in (quantized.reason or "")
    intel = match(llm(), spec("mlx", "4bit"), "4bit", HOSTS[2], FULL)
    assert not intel.ok and "Apple Silicon" in (intel.reason or "")


@given(others=st.sets(st.sampled_from(["llama.cpp", "Transformers", "vLLM", "SGLang"])))
def test_on_linux_mlx_ranks_after_the_others_unless_asked_for(others: set[str]) -> None:
    linux = HOSTS[0]
    answers = [Match.yes(ENGINE), *(Match.yes(name) for name in sorted(others))]
    ranked = rank(answers, linux, preference=())
    assert ranked.ranked[-1] == ENGINE
    assert ranked.engine == (ENGINE if not others else min(others, key=ranked.ranked.index))
    assert rank(answers, linux, requested="mlx", preference=()).engine == ENGINE


def test_on_apple_silicon_mlx_comes_first() -> None:
    answers = [Match.yes("llama.cpp"), Match.yes("Transformers"), Match.yes(ENGINE)]
    assert rank(answers, HOSTS[1], preference=()).engine == ENGINE


def test_engine_info_reports_the_missing_library() -> None:
    assert engine_info(FULL, "linux").available
    missing = engine_info(MlxInstall(), "linux")
    assert not missing.available and "mlx" in (missing.unavailable_reason or "")


def test_every_catalog_mlx_spec_runs_on_apple_silicon() -> None:
    from modelyard.catalog import get_catalog

    catalog = get_catalog()
    specs = [
        (family, spec, quantization)
        for family in catalog.families("LLM")
        for spec in family.model_specs
        if spec.model_format == "mlx"
        for quantization in spec.quantizations
    ]
    assert any(f.model_name == "smollm2-instruct" for f, _, _ in specs)
    refused = [
        (f.model_name, q, answer.reason)
        for f, s, q in specs
        if not (answer := match(f, s, q, HOSTS[1], FULL)).ok and "vision" not in f.model_ability
    ]
    assert not refused
