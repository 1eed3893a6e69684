"""Engine matching: properties over arbitrary yes/no answers, and the documented order."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelyard import hookimpl
from modelyard.matching import (
    ENGINE_ORDER,
    Choice,
    choose_engine,
    engine_table,
    env_preference,
    rank,
)
from modelyard.plugins import PluginManager
from modelyard.specs import (
    Accelerator,
    EmbeddingFamily,
    EngineInfo,
    Family,
    Hardware,
    LLMFamily,
    Match,
    ModelSource,
    ModelSpec,
)

GiB = 1024**3
LINUX_CPU = Hardware("linux", "x86_64", 2, 24 * GiB, 20 * GiB)
LINUX_CUDA = Hardware(
    "linux",
    "x86_64",
    16,
    128 * GiB,
    120 * GiB,
    (Accelerator("cuda", 0, "NVIDIA H100", 80 * GiB, 79 * GiB),),
)
MAC = Hardware(
    "darwin",
    "arm64",
    10,
    32 * GiB,
    20 * GiB,
    (Accelerator("metal", 0, "Apple M2", 32 * GiB, 20 * GiB),),
)
WINDOWS = Hardware("windows", "AMD64", 8, 16 * GiB, 8 * GiB)
HARDWARE = [LINUX_CPU, LINUX_CUDA, MAC, WINDOWS]

SPEC = ModelSpec("pytorch", 1.5, ("none",), (ModelSource("huggingface", "org/toy"),))
FAMILY = LLMFamily(
    model_name="toy", model_ability=("chat",), context_length=4096, model_specs=(SPEC,)
)

EXAMPLE_SRC = Path(__file__).resolve().parents[2] / "tests" / "example_engine" / "src"


class Answering:
    """A test plugin: registers engines and answers yes (reason None) or no (reason) for each."""

    def __init__(self, answers: dict[str, str | None], *, available: bool = True) -> None:
        self.answers = answers
        self.available = available

    @hookimpl
    def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
        for name in self.answers:
            register(
                EngineInfo(
                    name, ("LLM",), ("chat",), ("pytorch", "ggufv2"), "testlib",
                    available=self.available, unavailable_reason=None if self.available else "pip install testlib",
                )
            )  # fmt: skip

    @hookimpl
    def match_engine(
        self, family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
    ) -> list[Match]:
        return [Match.yes(n) if r is None else Match.no(n, r) for n, r in self.answers.items()]


@contextmanager
def registered(*plugins: object) -> Iterator[PluginManager]:
    """A plugin manager with these plugins only, unregistered on the way out (llm's conftest style)."""
    pm = PluginManager()
    names = [f"test-plugin-{i}" for i in range(len(plugins))]
    try:
        for plugin, name in zip(plugins, names, strict=True):
            pm.register(plugin, name=name)
        yield pm
    finally:
        for name in names:
            if pm.pm.has_plugin(name):
                pm.unregister(name)


def _choose(groups: list[dict[str, str | None]], hardware: Hardware, **kw: object) -> Choice:
    with registered(*(Answering(g) for g in groups)) as pm:
        return choose_engine(pm, FAMILY, SPEC, "none", hardware, **kw)  # type: ignore[arg-type]


POOL = [
    "vLLM",
    "SGLang",
    "llama.cpp",
    "Transformers",
    "sentence_transformers",
    "MLX",
    "acme",
    "Zeta",
    "beta-engine",
]
answers_st = st.dictionaries(
    st.sampled_from(POOL),
    st.none()
    | st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=12),
    max_size=len(POOL),
)


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[dict[str, str | None]], Hardware, str | None, list[str], int]:
    answers = draw(answers_st)
    names = list(answers)
    # Split the engines over 1-3 plugins.
    groups: list[dict[str, str | None]] = [{} for _ in range(draw(st.integers(1, 3)))]
    for name in names:
        groups[draw(st.integers(0, len(groups) - 1))][name] = answers[name]
    requested = draw(st.none() | st.sampled_from([*POOL, "nope"]))
    if requested is not None:
        requested = draw(st.sampled_from([requested, requested.upper(), requested.lower()]))
    preference = draw(st.lists(st.sampled_from(POOL), unique=True, max_size=3))
    return (
        groups,
        draw(st.sampled_from(HARDWARE)),
        requested,
        preference,
        draw(st.integers(0, 2**32)),
    )


@settings(deadline=None, max_examples=150)
@given(scenarios())
def test_choice_properties(
    scenario: tuple[list[dict[str, str | None]], Hardware, str | None, list[str], int],
) -> None:
    groups, hardware, requested, preference, seed = scenario
    answers = {name: reason for group in groups for name, reason in group.items()}
    yes = {name for name, reason in answers.items() if reason is None}
    choice = _choose(groups, hardware, requested=requested, preference=preference)

    # The choice is always among the yes-answers, and every yes is ranked.
    assert choice.engine is None or choice.engine in yes
    assert set(choice.ranked) == yes
    # Every no keeps its own reason.
    for name, reason in answers.items():
        if reason is not None:
            assert choice.refusals[name] == reason
    assert all(choice.refusals.values())

    if requested is None:
        assert choice.engine == (choice.ranked[0] if yes else None)
        preferred_yes = [p for p in preference if p in yes]
        if preferred_yes:
            assert choice.engine == preferred_yes[0]
    else:
        match = [n for n in answers if n.lower() == requested.lower()]
        if match and answers[match[0]] is None:
            assert choice.engine == match[0]
        elif match:
            assert choice.engine is None
            assert choice.requested == match[0]
            assert answers[match[0]] in choice.explain()
        else:
            assert choice.engine is None
            assert choice.refusals[requested].startswith("not installed; installed engines:")

    # Deterministic, and independent of the order the plugins were registered in.
    rng = random.Random(seed)
    shuffled = [dict(rng.sample(list(g.items()), len(g))) for g in groups]
    rng.shuffle(shuffled)
    again = _choose(shuffled, hardware, requested=requested, preference=preference)
    assert msgspec.to_builtins(again) == msgspec.to_builtins(choice)
    assert list(again.refusals) == list(choice.refusals)


@pytest.mark.parametrize(
    ("hardware", "expected"),
    [
        (LINUX_CUDA, ["vLLM", "SGLang", "llama.cpp", "Transformers", "MLX", "acme", "Zeta"]),
        (LINUX_CPU, ["vLLM", "SGLang", "llama.cpp", "Transformers", "MLX", "acme", "Zeta"]),
        (MAC, ["MLX", "llama.cpp", "Transformers", "vLLM", "SGLang", "acme", "Zeta"]),
    ],
)
def test_documented_order_then_third_party_alphabetically(
    hardware: Hardware, expected: list[str]
) -> None:
    matches = [
        Match.yes(name)
        for name in ["Zeta", "Transformers", "acme", "MLX", "llama.cpp", "SGLang", "vLLM"]
    ]
    choice = rank(matches, hardware)
    assert choice.ranked == expected
    # The transformers plugin's embedding engine sits right after Transformers.
    with_st = rank([*matches, Match.yes("sentence_transformers")], hardware).ranked
    assert with_st.index("sentence_transformers") == with_st.index("Transformers") + 1
    assert choice.engine == expected[0]


def test_order_table_lists_every_known_engine_once() -> None:
    for order in ENGINE_ORDER.values():
        assert sorted(order) == sorted(
            {"vLLM", "SGLang", "llama.cpp", "Transformers", "sentence_transformers", "MLX"}
        )


def test_gguf_on_cuda_linux_goes_to_llamacpp_when_vllm_refuses() -> None:
    matches = [
        Match.no("vLLM", "vLLM does not serve ggufv2"),
        Match.yes("Transformers"),
        Match.yes("llama.cpp"),
    ]
    choice = rank(matches, LINUX_CUDA)
    assert choice.engine == "llama.cpp"
    assert choice.refusals == {"vLLM": "vLLM does not serve ggufv2"}


def test_preference_comes_first_and_is_case_insensitive() -> None:
    matches = [Match.yes("vLLM"), Match.yes("Transformers"), Match.yes("llama.cpp")]
    assert rank(matches, LINUX_CUDA, preference=["transformers"]).engine == "Transformers"
    # A preferred engine that refused does not win; the next preference or the order does.
    matches[0] = Match.no("vLLM", "no CUDA device")
    assert rank(matches, LINUX_CUDA, preference=["vllm", "LLAMA.CPP"]).engine == "llama.cpp"


def test_env_preference_is_read_by_choose_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_ENGINE_PREFERENCE", " Transformers , llama.cpp ,")
    assert env_preference() == ("Transformers", "llama.cpp")
    choice = _choose([{"vLLM": None, "Transformers": None}], LINUX_CUDA)
    assert choice.engine == "Transformers"
    # An explicit empty preference ignores the environment.
    assert (
        _choose([{"vLLM": None, "Transformers": None}], LINUX_CUDA, preference=()).engine == "vLLM"
    )


def test_requested_engine_is_honoured_case_insensitively() -> None:
    choice = _choose(
        [{"vLLM": None, "llama.cpp": None}], LINUX_CUDA, requested="LLAMA.CPP", preference=()
    )
    assert choice.engine == "llama.cpp"
    assert "Chosen engine: llama.cpp" in choice.explain()


def test_requested_engine_that_refuses_is_not_swapped_for_another() -> None:
    choice = _choose(
        [{"vLLM": "needs a CUDA device; none was found", "llama.cpp": None}],
        LINUX_CPU,
        requested="vllm",
        preference=(),
    )
    assert choice.engine is None
    assert choice.ranked == ["llama.cpp"]
    text = choice.explain()
    assert (
        "Requested engine 'vLLM' cannot run this model: needs a CUDA device; none was found" in text
    )
    assert "Can run it (best first): llama.cpp" in text


def test_unknown_requested_engine_lists_installed_ones() -> None:
    choice = _choose(
        [{"vLLM": "no CUDA", "llama.cpp": None}], LINUX_CPU, requested="sglang", preference=()
    )
    assert choice.engine is None
    assert choice.refusals["sglang"] == "not installed; installed engines: vLLM, llama.cpp"


def test_no_engine_at_all_explains_itself() -> None:
    choice = _choose([{"llama.cpp": "serves ggufv2 only, not pytorch"}], LINUX_CPU, preference=())
    assert choice.engine is None
    assert choice.explain().splitlines() == [
        "No installed engine can run this model.",
        "Cannot run it:",
        "  llama.cpp: serves ggufv2 only, not pytorch",
    ]


def test_unavailable_engine_is_refused_with_its_install_hint_even_if_it_says_yes() -> None:
    with registered(
        Answering({"vLLM": None}, available=False), Answering({"llama.cpp": None})
    ) as pm:
        choice = choose_engine(pm, FAMILY, SPEC, "none", LINUX_CUDA, preference=())
    assert choice.engine == "llama.cpp"
    assert choice.refusals == {"vLLM": "pip install testlib"}


def test_engine_whose_plugin_gives_no_answer_is_a_refusal_with_reason() -> None:
    class Silent:
        @hookimpl
        def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
            register(EngineInfo("quiet", ("LLM",), ("chat",), ("pytorch",), "quietlib"))

    with registered(Silent(), Answering({"Transformers": None})) as pm:
        choice = choose_engine(pm, FAMILY, SPEC, "none", LINUX_CPU, preference=())
    assert choice.engine == "Transformers"
    assert "no answer" in choice.refusals["quiet"]


def test_engine_for_another_model_type_is_refused_with_reason() -> None:
    embedding = EmbeddingFamily(model_name="emb", dimensions=8, max_tokens=128, model_specs=(SPEC,))
    with registered(Answering({"Transformers": None})) as pm:
        choice = choose_engine(pm, embedding, SPEC, "none", LINUX_CPU, preference=())
    assert choice.engine is None
    assert choice.refusals == {"Transformers": "serves LLM models, not embedding"}


class QuantPicky:
    """Runs GGUF at Q4_K_M only, and pytorch never: to check the table groups quantizations."""

    @hookimpl
    def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
        register(
            EngineInfo(
                "llama.cpp", ("LLM", "embedding"), ("chat", "embed"), ("ggufv2",), "xllamacpp"
            )
        )
        register(EngineInfo("Broken", ("LLM",), ("chat",), ("pytorch",), "brokenlib", available=False,
                            unavailable_reason="brokenlib is not installed: pip install brokenlib"))  # fmt: skip

    @hookimpl
    def match_engine(
        self, family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
    ) -> list[Match]:
        if spec.model_format != "ggufv2":
            return [Match.no("llama.cpp", f"serves ggufv2 only, not {spec.model_format}")]
        if quantization != "Q4_K_M":
            return [Match.no("llama.cpp", f"{quantization} is not supported by this build")]
        return [Match.yes("llama.cpp")]


def test_engine_table_has_xinference_shape() -> None:
    gguf = ModelSpec(
        "ggufv2",
        0.5,
        ("Q4_K_M", "Q8_0"),
        (ModelSource("huggingface", "org/toy-gguf", "toy-{quantization}.gguf"),),
    )
    family = LLMFamily(
        model_name="toy", model_ability=("chat",), context_length=4096, model_specs=(SPEC, gguf)
    )
    with registered(QuantPicky()) as pm:
        table = engine_table(pm, family, LINUX_CPU)
    assert table == {
        "llama.cpp": [
            {
                "model_name": "toy",
                "model_format": "ggufv2",
                "model_size_in_billions": "0_5",
                "quantizations": ["Q4_K_M"],
            }
        ],
        "Broken": "brokenlib is not installed: pip install brokenlib",
    }
    # Nothing runnable: the engine's reasons, joined.
    only_pytorch = LLMFamily(
        model_name="toy", model_ability=("chat",), context_length=4096, model_specs=(SPEC,)
    )
    with registered(QuantPicky()) as pm:
        assert (
            engine_table(pm, only_pytorch, LINUX_CPU)["llama.cpp"]
            == "serves ggufv2 only, not pytorch"
        )


def test_engine_table_for_embedding_lists_one_entry_per_quantization() -> None:
    gguf = ModelSpec(
        "ggufv2",
        0.1,
        ("Q4_K_M", "Q8_0", "F16"),
        (ModelSource("huggingface", "org/e", "e-{quantization}.gguf"),),
    )
    family = EmbeddingFamily(model_name="emb", dimensions=8, max_tokens=128, model_specs=(gguf,))
    with registered(QuantPicky()) as pm:
        table = engine_table(pm, family, LINUX_CPU)
    # "Broken" serves LLMs only, so it is not listed for an embedding model.
    assert table == {
        "llama.cpp": [{"model_name": "emb", "model_format": "ggufv2", "quantization": "Q4_K_M"}]
    }


def test_example_engine_only_takes_its_own_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    example = pytest.importorskip(
        "modelyard_example_engine", reason="tests/example_engine/src is missing"
    )
    echo = LLMFamily(
        model_name="echo",
        model_ability=("chat",),
        context_length=64,
        model_specs=(SPEC,),
        architectures=("EchoModel",),
    )
    llama = LLMFamily(
        model_name="toy",
        model_ability=("chat",),
        context_length=64,
        model_specs=(SPEC,),
        architectures=("LlamaForCausalLM",),
    )
    with registered(example, Answering({"Transformers": None})) as pm:
        assert choose_engine(pm, echo, SPEC, "none", LINUX_CPU, preference=()).ranked == [
            "Transformers",
            "example",
        ]
        other = choose_engine(pm, llama, SPEC, "none", LINUX_CPU, preference=())
        assert other.ranked == ["Transformers"]
        assert other.refusals == {
            "example": "serves the EchoModel architecture only (this model is LlamaForCausalLM)"
        }
        assert engine_table(pm, echo, LINUX_CPU)["example"] == [
            {
                "model_name": "echo",
                "model_format": "pytorch",
                "model_size_in_billions": "1_5",
                "quantizations": ["none"],
            }
        ]
