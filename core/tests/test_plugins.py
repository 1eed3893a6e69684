"""The plugin system: real discovery of the example engine package, the environment switches,
failures that must be loud (typos, duplicates) or contained (broken imports), and the example
engine itself as the documented template."""

from __future__ import annotations

import importlib.metadata
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pluggy
import pytest
from modelyard import hookimpl, hookspecs, plugins
from modelyard.errors import ContextLengthExceeded, InvalidRequest
from modelyard.plugins import PluginConflict, PluginManager
from modelyard.schemas import (
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    EmbeddingRequest,
)
from modelyard.specs import EngineInfo, Family, Hardware, LLMFamily, Match, ModelSource, ModelSpec

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "tests" / "example_engine"
HOOKS = sorted(
    name
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(_, "modelyard_spec")
)
ENV = (
    "MODELYARD_PLUGINS",
    "MODELYARD_BLOCK_PLUGINS",
    "MODELYARD_DISABLE_PLUGIN_AUTOLOAD",
    "MODELYARD_PLUGIN_MODULES",
)
CPU = Hardware("linux", "x86_64", 2, 8 * 1024**3, 4 * 1024**3)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def example_dist() -> importlib.metadata.Distribution:
    try:
        return importlib.metadata.distribution("modelyard-example-engine")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(
            "modelyard-example-engine is not installed here (uv pip install -e tests/example_engine)"
        )


@pytest.fixture
def plugin_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Importable plugin modules: two good ones and one whose import fails."""
    for name, engine in (("plugin_alpha", "alpha"), ("plugin_beta", "beta")):
        (tmp_path / f"{name}.py").write_text(
            "from modelyard import hookimpl\n"
            "from modelyard.specs import EngineInfo\n"
            "@hookimpl\n"
            "def register_engines(register):\n"
            f"    register(EngineInfo({engine!r}, ('LLM',), ('chat',), ('pytorch',), 'lib'))\n"
        )
    (tmp_path / "plugin_broken.py").write_text(
        "raise RuntimeError('libbroken.so: cannot open shared object file')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def fake_entry_points(monkeypatch: pytest.MonkeyPatch, **targets: str) -> None:
    """Stand in for importlib.metadata's entry points (pytest's test_config.py does the same)."""
    eps = [
        importlib.metadata.EntryPoint(name, value, plugins.ENTRY_POINT_GROUP)
        for name, value in targets.items()
    ]
    monkeypatch.setattr(plugins, "_entry_points", lambda: eps)


def loaded(**env: str) -> PluginManager:
    pm = PluginManager()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        pm.load_entry_points()
    return pm


# --- discovery for real: the example package installed in this environment -------------------


def test_example_engine_is_discovered_from_its_installed_entry_point() -> None:
    dist = example_dist()
    pm = loaded()
    assert "example" in pm.engines()
    info = pm.engine("EXAMPLE")
    assert info is not None and info.available
    assert info.library_version == dist.version
    described = {p.name: p for p in pm.describe()}
    assert described["example"].hooks == HOOKS
    assert described["example"].engines == ["example"]
    assert "example" not in pm.failed


def test_describe_names_the_distribution_and_its_version() -> None:
    dist = example_dist()
    described = {p.name: p for p in loaded().describe()}
    assert (described["example"].distribution, described["example"].version) == (
        dist.metadata["Name"],
        dist.version,
    )


def test_environment_switches_apply_to_the_real_example() -> None:
    example_dist()
    assert "example" in loaded(MODELYARD_PLUGINS="example").engines()
    assert "example" not in loaded(MODELYARD_PLUGINS="something-else").engines()
    assert "example" not in loaded(MODELYARD_BLOCK_PLUGINS="example").engines()
    assert loaded(MODELYARD_DISABLE_PLUGIN_AUTOLOAD="1").engines() == {}


# --- the environment switches, on faked entry points -------------------------------------------


def test_allow_list_block_list_and_autoload_off(
    plugin_modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(monkeypatch, alpha="plugin_alpha", beta="plugin_beta")
    assert set(loaded().engines()) == {"alpha", "beta"}
    assert set(loaded(MODELYARD_PLUGINS=" beta ,").engines()) == {"beta"}
    assert set(loaded(MODELYARD_BLOCK_PLUGINS="alpha").engines()) == {"beta"}
    assert set(
        loaded(MODELYARD_PLUGINS="alpha,beta", MODELYARD_BLOCK_PLUGINS="beta").engines()
    ) == {"alpha"}
    for off in ("1", "true", "YES"):
        assert loaded(MODELYARD_DISABLE_PLUGIN_AUTOLOAD=off).engines() == {}
    # Autoload off still registers the modules named explicitly.
    only = loaded(MODELYARD_DISABLE_PLUGIN_AUTOLOAD="1", MODELYARD_PLUGIN_MODULES="plugin_beta")
    assert set(only.engines()) == {"beta"}


def test_broken_plugins_are_listed_with_their_error_not_fatal(
    plugin_modules: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points(monkeypatch, alpha="plugin_alpha", bad_ep="plugin_broken")
    pm = loaded(MODELYARD_PLUGIN_MODULES="plugin_broken,plugin_beta")
    assert set(pm.engines()) == {"alpha", "beta"}
    message = "RuntimeError: libbroken.so: cannot open shared object file"
    assert pm.failed == {"plugin_broken": message, "bad_ep": message}
    errors = {p.name: p.error for p in pm.describe() if p.error}
    assert errors == {"plugin_broken": message, "bad_ep": message}
    missing = loaded(MODELYARD_PLUGIN_MODULES="no_such_plugin_module")
    assert missing.failed["no_such_plugin_module"].startswith(
        "ModuleNotFoundError: No module named 'no_such_plugin_module'"
    )


# --- mistakes in a plugin fail loudly ----------------------------------------------------------


def test_hookimpl_with_a_typo_in_its_name_fails_at_registration() -> None:
    class Typo:
        @hookimpl
        def match_engines(
            self, family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
        ) -> None:
            return None

    pm = PluginManager()
    with pytest.raises(pluggy.PluginValidationError, match="match_engines"):
        pm.register(Typo(), name="typo")


def test_hookimpl_with_a_wrong_argument_fails_at_registration() -> None:
    class WrongArgument:
        @hookimpl
        def match_engine(self, family: Family, spec: ModelSpec, quant: str) -> None:
            return None

    with pytest.raises(pluggy.PluginValidationError, match="quant"):
        PluginManager().register(WrongArgument(), name="wrong-argument")


class Registers:
    def __init__(self, *names: str, available: bool = True) -> None:
        self.names = names
        self.available = available

    @hookimpl
    def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
        for name in self.names:
            reason = (
                None if self.available else f"{name}lib is not installed: pip install {name}lib"
            )
            register(
                EngineInfo(
                    name,
                    ("LLM",),
                    ("chat",),
                    ("pytorch",),
                    f"{name}lib",
                    None,
                    self.available,
                    reason,
                )
            )


def test_duplicate_engine_name_names_both_plugins() -> None:
    pm = PluginManager()
    pm.register(Registers("vLLM"), name="modelyard-engine-vllm")
    pm.register(Registers("vllm"), name="vllm-fork")
    with pytest.raises(PluginConflict) as caught:
        pm.engines()
    message = caught.value.message
    assert "'modelyard-engine-vllm'" in message and "'vllm-fork'" in message
    assert "MODELYARD_BLOCK_PLUGINS" in message
    pm.unregister("vllm-fork")
    assert list(pm.engines()) == ["vLLM"]


def test_describe_lists_plugins_hooks_engines_and_unavailable_engines() -> None:
    pm = PluginManager()
    pm.register(Registers("one", "two"), name="pair")
    pm.register(Registers("three", available=False), name="missing-lib")
    described = {p.name: p for p in pm.describe()}
    assert described["pair"].hooks == ["register_engines"]
    assert described["pair"].engines == ["one", "two"]
    info = pm.engine("THREE")
    assert info is not None and not info.available
    assert info.unavailable_reason == "threelib is not installed: pip install threelib"


# --- the example engine: every hook implemented, documented and working -------------------------


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(EXAMPLE_DIR / "src"))
    return pytest.importorskip(
        "modelyard_example_engine", reason="tests/example_engine/src is missing"
    )


def test_example_implements_and_documents_every_hook(example: Any) -> None:
    assert [
        name for name in HOOKS if not hasattr(getattr(example, name, None), "modelyard_impl")
    ] == []
    readme = (EXAMPLE_DIR / "README.md").read_text()
    for name in HOOKS:
        params = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
        assert f"`{name}({params})`" in readme, f"README does not document {name}({params})"


def _example_pm(example: Any) -> tuple[PluginManager, dict[str, Family]]:
    pm = PluginManager()
    pm.register(example, name="example")
    families: list[Family] = []
    pm.hook.register_families(register=families.append)
    return pm, {f.model_name: f for f in families}


def test_example_matches_only_its_own_models(example: Any) -> None:
    pm, families = _example_pm(example)
    echo = families["echo"]
    spec = echo.model_specs[0]
    assert pm.hook.match_engine(
        family=echo, spec=spec, quantization="none", hardware=CPU, facts={}
    ) == [[Match.yes("example")]]
    gguf = ModelSpec("ggufv2", 0.1, ("Q4_0",), (ModelSource("local", "/x"),))
    assert pm.hook.match_engine(
        family=echo, spec=gguf, quantization="Q4_0", hardware=CPU, facts={}
    ) == [[Match.no("example", "serves the pytorch format only, not ggufv2")]]
    ask = {"family": echo, "spec": spec, "quantization": "none", "params": {}, "hardware": CPU}
    # Routed to the plugin that registered the engine, whatever the case of the name asked for.
    for name in ("example", "Example", "EXAMPLE"):
        estimate = pm.call_owner("estimate_resources", name, **ask)
        assert estimate is not None and estimate.total == 1024 * 1024
    assert pm.call_owner("estimate_resources", "vLLM", **ask) is None  # nobody registered it


def test_example_echo_chat_streams_words_with_usage(example: Any, tmp_path: Path) -> None:
    pm, families = _example_pm(example)
    echo = families["echo"]
    assert isinstance(echo, LLMFamily)
    load = pm.hook.load_model
    model = load(
        engine="example",
        family=echo,
        spec=echo.model_specs[0],
        quantization="none",
        params={},
        path=tmp_path,
    )
    assert model.abilities == ("chat", "generate") and model.context_length == echo.context_length
    request = ChatCompletionRequest(
        model="echo",
        messages=[
            ChatMessage(role="system", content="be brief"),
            ChatMessage(role="user", content="hello  big world"),
        ],
    )

    async def collect(stream: Any) -> list[dict[str, Any]]:
        return [chunk async for chunk in stream]

    chunks = anyio.run(collect, model.chat(request))
    assert [c["choices"][0]["delta"].get("content") for c in chunks] == [
        "",
        "hello  ",
        "big ",
        "world",
        "",
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    short = anyio.run(
        collect,
        model.complete(CompletionRequest(model="echo", prompt="one two three", max_tokens=2)),
    )
    assert "".join(c["choices"][0]["text"] for c in short) == "one two "
    assert short[-1]["choices"][0]["finish_reason"] == "length"
    tight = load(
        engine="example",
        family=echo,
        spec=echo.model_specs[0],
        quantization="none",
        params={"context_length": 3},
        path=tmp_path,
    )
    with pytest.raises(ContextLengthExceeded, match="needs 5 tokens"):
        tight.chat(
            ChatCompletionRequest(
                model="echo", messages=[ChatMessage(role="user", content="a b c d e")]
            )
        )
    with pytest.raises(
        InvalidRequest,
        match="unknown parameter 'context_lenght' for the example engine; did you mean context_length",
    ):
        load(
            engine="example",
            family=echo,
            spec=echo.model_specs[0],
            quantization="none",
            params={"context_lenght": 8},
            path=tmp_path,
        )
    # The core routes by owner: an engine no plugin registered loads nothing.
    args = {"family": echo, "spec": echo.model_specs[0], "quantization": "none", "params": {}}
    assert pm.call_owner("load_model", "vLLM", **args, path=tmp_path) is None
    routed = pm.call_owner("load_model", "EXAMPLE", **args, path=tmp_path)
    assert routed is not None and routed.context_length == echo.context_length


def test_example_embeddings_are_deterministic_unit_vectors(example: Any, tmp_path: Path) -> None:
    pm, families = _example_pm(example)
    family = families["echo-embedding"]
    model = pm.hook.load_model(
        engine="example",
        family=family,
        spec=family.model_specs[0],
        quantization="none",
        params={},
        path=tmp_path,
    )
    result = anyio.run(
        model.embed, EmbeddingRequest(model="e", input=["same text", "other", "same text"])
    )
    vectors = [item["embedding"] for item in result["data"]]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]
    assert sum(x * x for x in vectors[1]) == pytest.approx(1.0)
    assert result["usage"] == {"prompt_tokens": 5, "total_tokens": 5}
