"""SGLang's eligibility rule, for every combination of format, quantization, hardware and install.

Needs neither sglang nor torch: the rule is pure, and the install and architecture list are
arguments. The rule as the seed states it is written out again in ``expected``, independently.
"""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.engine_library import ArchitectureSource, LibraryFacts
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
    RerankFamily,
)
from modelyard_sglang.install import SglangInstall
from modelyard_sglang.rule import ENGINE, engine_info, match

ALL_FORMATS: tuple[str, ...] = typing.get_args(ModelFormat)
QUANTIZATIONS = ("none", "Int3", "Int4", "Int8", "int4", "4-bit", "fp8", "Q4_K_M", "Int2", "")
SUPPORTED = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM", "BertModel"})
CPU = SglangInstall("cpu", "0.5.23")
CUDA = SglangInstall("cuda", "0.5.23")
INSTALLS = (SglangInstall(None), CPU, CUDA)


def spec(fmt: str, quantization: str = "none") -> ModelSpec:
    return ModelSpec(fmt, 0.135, (quantization or "none",), (ModelSource("local", "/m/x"),))  # type: ignore[arg-type]


def llm(architectures: tuple[str, ...] = ("LlamaForCausalLM",)) -> LLMFamily:
    return LLMFamily(
        model_name="smollm2",
        model_specs=(spec("pytorch"),),
        model_ability=("chat",),
        context_length=8192,
        architectures=architectures,
    )


def hardware(system: str = "linux", accelerators: tuple[str, ...] = ()) -> Hardware:
    return Hardware(
        system=system,  # type: ignore[arg-type]
        machine="x86_64",
        cpu_count=2,
        memory_total=24 << 30,
        memory_available=20 << 30,
        accelerators=tuple(
            Accelerator(kind, i, f"{kind}{i}", 80 << 30, 80 << 30)  # type: ignore[arg-type]
            for i, kind in enumerate(accelerators)
        ),
    )


RERANK = RerankFamily(
    model_name="ce", model_specs=(spec("pytorch"),), max_tokens=512, architectures=("BertModel",)
)
families = st.sampled_from(
    [
        llm(),
        llm(("Qwen2ForCausalLM",)),
        llm(("MadeUpForCausalLM",)),
        llm(("MadeUpForCausalLM", "LlamaForCausalLM")),
        llm(()),
        EmbeddingFamily(
            model_name="minilm",
            model_specs=(spec("pytorch"),),
            dimensions=384,
            max_tokens=256,
            architectures=("BertModel",),
        ),
        RERANK,
    ]
)
hardwares = st.builds(
    hardware,
    system=st.sampled_from(["linux", "darwin", "windows"]),
    accelerators=st.lists(st.sampled_from(["cuda", "rocm", "metal"]), max_size=3).map(tuple),
)


def expected(
    family: Family, fmt: str, quantization: str, hw: Hardware, install: SglangInstall
) -> bool:
    """The rule as the seed states it, written independently of the implementation."""
    format_ok = fmt in ("pytorch", "gptq", "awq", "fp8", "bnb", "fp4")
    if fmt == "pytorch":
        format_ok = quantization == "none"
    elif fmt == "awq":
        format_ok = quantization == "Int4"
    elif fmt == "gptq":
        format_ok = quantization in ("Int3", "Int4", "Int8")
    gpu = hw.has("cuda") or hw.has("rocm")
    device_ok = (install.build == "cuda" and gpu) or (install.build == "cpu" and fmt == "pytorch")
    return (
        family.model_type in ("LLM", "embedding")
        and format_ok
        and hw.system == "linux"
        and device_ok
        and any(a in SUPPORTED for a in family.architectures)
    )


def answer(
    family: Family,
    fmt: str,
    quantization: str,
    hw: Hardware,
    install: SglangInstall = CPU,
    source: ArchitectureSource = "source",
) -> Match:
    facts = LibraryFacts(install, SUPPORTED, source)
    return match(family, spec(fmt, quantization), quantization, hw, facts)


@given(
    family=families,
    fmt=st.sampled_from(ALL_FORMATS),
    quantization=st.sampled_from(QUANTIZATIONS) | st.text(max_size=8),
    hw=hardwares,
    install=st.sampled_from(INSTALLS),
    source=st.sampled_from(typing.get_args(ArchitectureSource)),
)
def test_rule_matches_the_seed_for_every_input(
    family: Family,
    fmt: str,
    quantization: str,
    hw: Hardware,
    install: SglangInstall,
    source: ArchitectureSource,
) -> None:
    got = answer(family, fmt, quantization, hw, install, source)
    assert got.engine == ENGINE
    assert got.ok is expected(family, fmt, quantization, hw, install)
    if got.ok:
        assert got.reason is None
    else:
        assert got.reason and len(got.reason) > 20
    assert answer(family, fmt, quantization, hw, install, source) == got  # pure


@given(hw=hardwares.filter(lambda h: h.system == "linux" and h.has("cuda")))
def test_sglang_ranks_after_vllm_and_before_llamacpp_on_cuda(hw: Hardware) -> None:
    answers = [
        Match.yes("llama.cpp"),
        Match.yes("Transformers"),
        answer(llm(), "pytorch", "none", hw, CUDA),
        Match.yes("vLLM"),
    ]
    ranked = list(rank(answers, hw).ranked)
    assert ranked.index("vLLM") < ranked.index(ENGINE) < ranked.index("llama.cpp")


def refusal(
    family: Family, fmt: str, quantization: str, hw: Hardware, install: SglangInstall = CPU
) -> str:
    got = answer(family, fmt, quantization, hw, install)
    assert not got.ok and got.reason is not None
    return got.reason


@pytest.mark.parametrize(
    ("fmt", "quantization", "install", "words"),
    [
        ("ggufv2", "Q4_K_M", CUDA, ("not ggufv2", "llama.cpp")),
        ("pytorch", "4-bit", CUDA, ("only unquantized", "'4-bit'")),
        ("awq", "Int8", CUDA, ("awq", "Int4", "'Int8'")),
        ("gptq", "Int2", CUDA, ("gptq", "Int3/Int4/Int8", "'Int2'")),
        ("awq", "Int4", CPU, ("CPU engine", "unquantized pytorch", "not awq")),
    ],
)
def test_format_refusals_name_what_is_wrong(
    fmt: str, quantization: str, install: SglangInstall, words: tuple[str, ...]
) -> None:
    reason = refusal(llm(), fmt, quantization, hardware(accelerators=("cuda",)), install)
    for word in words:
        assert word in reason


def test_os_device_library_and_architecture_refusals() -> None:
    assert "Linux only" in refusal(llm(), "pytorch", "none", hardware("darwin"))
    missing = refusal(llm(), "pytorch", "none", hardware(), SglangInstall(None))
    assert "not installed" in missing and "modelyard env install SGLang" in missing
    no_gpu = refusal(llm(), "pytorch", "none", hardware(accelerators=("metal",)), CUDA)
    assert "CUDA build" in no_gpu and "metal" in no_gpu and "env install SGLang" in no_gpu
    assert answer(llm(), "pytorch", "none", hardware(accelerators=("rocm",)), CUDA).ok
    unsupported = refusal(llm(("MadeUpForCausalLM",)), "pytorch", "none", hardware())
    assert "MadeUpForCausalLM" in unsupported and "sglang 0.5.23" in unsupported
    assert "declares no architectures" in refusal(llm(()), "pytorch", "none", hardware())
    assert "not rerank" in refusal(RERANK, "pytorch", "none", hardware())
    shipped = answer(llm(("X",)), "pytorch", "none", hardware(), source="shipped-list")
    assert shipped.reason is not None and "shipped with modelyard-engine-sglang" in shipped.reason


def test_engine_info_reports_a_missing_library_with_the_install_command() -> None:
    missing = engine_info(SglangInstall(None))
    assert not missing.available
    assert missing.unavailable_reason and "env install SGLang" in missing.unavailable_reason
    present = engine_info(CPU)
    assert present.available and present.library_version == "0.5.23"
    assert set(present.formats) == {"pytorch", "gptq", "awq", "fp8", "bnb", "fp4"}


def test_registering_the_plugin_imports_neither_sglang_nor_torch() -> None:
    code = (
        "import sys\n"
        "from modelyard.plugins import PluginManager\n"
        "import modelyard_sglang\n"
        "pm = PluginManager(); pm.register(modelyard_sglang, name='sglang')\n"
        "info = pm.engine('sglang')\n"
        "assert info is not None and info.name == 'SGLang', info\n"
        "from modelyard_sglang.install import ARCHITECTURES\n"
        "names, source = ARCHITECTURES.supported\n"
        "assert 'LlamaForCausalLM' in names, source\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('sglang', 'torch'))\n"
        "assert not heavy, heavy\n"
        "print(source)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("source", "shipped-list")


def test_facts_from_sglangs_own_environment_decide_the_match() -> None:
    """Where SGLang runs in an environment of its own, the server's plugin judges by the facts its
    engine_facts reported there, not by this environment (which may not have SGLang)."""
    import modelyard_sglang

    facts = {"install": {"build": "cpu", "version": "0.5.23"},
             "architectures": ["LlamaForCausalLM"], "source": "registry"}  # fmt: skip
    [yes] = modelyard_sglang.match_engine(
        family=llm(), spec=spec("pytorch"), quantization="none", hardware=hardware(),
        facts={ENGINE: facts},
    )  # fmt: skip
    assert yes.ok
    [no] = modelyard_sglang.match_engine(
        family=llm(("Qwen2ForCausalLM",)), spec=spec("pytorch"), quantization="none",
        hardware=hardware(), facts={ENGINE: facts},
    )  # fmt: skip
    assert not no.ok and "Qwen2ForCausalLM" in (no.reason or "")
    reported = modelyard_sglang.engine_facts(engine=ENGINE)
    assert set(reported) == {"install", "architectures", "source"}
    assert reported["install"]["build"] == modelyard_sglang.INSTALL.build
