"""Engine environments: the per-engine interpreter store, probing another interpreter, `env use`,
`env list`, `env remove`, and ``GET /v1/environments`` — against real interpreters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner
from modelyard import envs, hookimpl
from modelyard.cli import main
from modelyard.envs import probing as probe_module
from modelyard.envs.store import EnvConfig, EnvStore
from modelyard.errors import InvalidRequest
from modelyard.plugins import get_plugin_manager
from modelyard.runner.protocol import PROTOCOL_VERSION
from modelyard.specs import EngineInfo, Hardware, LLMFamily, Match, ModelSource, ModelSpec


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    return tmp_path


def bare_python(tmp_path: Path) -> str:
    """A real interpreter without modelyard: a fresh venv of this Python (no packages)."""
    target = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
    return str(target / "bin" / "python")


def test_store_keeps_one_config_per_engine_case_insensitively(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    assert store.get("vLLM") is None and store.all() == []
    assert store.interpreter("vLLM") == sys.executable  # no config: the server's own Python
    store.set(EnvConfig(engine="vLLM", python="/opt/vllm/bin/python"))
    assert (
        store.get("vllm") == store.get("VLLM")
        and store.get("vllm").python == "/opt/vllm/bin/python"
    )
    assert store.interpreter("VLLM") == "/opt/vllm/bin/python"
    store.set(EnvConfig(engine="llama.cpp", python="/x/python"))
    assert [c.engine for c in store.all()] == ["llama.cpp", "vLLM"]
    assert store.remove("Vllm").engine == "vLLM" and store.get("vLLM") is None
    assert store.remove("vLLM") is None


def test_removing_a_managed_environment_deletes_it_an_external_one_is_kept(tmp_path: Path) -> None:
    store = EnvStore(tmp_path)
    built = store.managed_path("vLLM")
    built.mkdir(parents=True)
    store.set(EnvConfig(engine="vLLM", python=str(built / "bin/python"), managed=True))
    store.remove("vLLM")
    assert not built.exists()
    external = tmp_path / "mine"
    external.mkdir()
    store.set(EnvConfig(engine="llama.cpp", python=str(external / "python")))
    store.remove("llama.cpp")
    assert external.exists()


def test_probe_reports_this_environment_exactly() -> None:
    facts = envs.probe(sys.executable)
    assert facts.protocol == PROTOCOL_VERSION and facts.missing is None
    here = get_plugin_manager().engines()
    assert {e.name for e in facts.engines} == set(here)
    llama = facts.engine("LLAMA.CPP")
    assert llama is not None and llama.library_version == here["llama.cpp"].library_version
    assert any(Path(site) == Path(sysconfig.get_paths()["purelib"]) for site in facts.site)


def test_probe_of_what_is_no_interpreter_names_the_path(tmp_path: Path) -> None:
    text = tmp_path / "python"
    text.write_text("not a program")
    for bad in (str(tmp_path / "missing"), str(text), "/etc/passwd"):
        with pytest.raises(InvalidRequest, match=bad):
            envs.probe(bad)
    script = tmp_path / "fake"
    script.write_text("#!/bin/sh\necho hello\n")
    script.chmod(0o755)
    with pytest.raises(InvalidRequest, match="not a Python interpreter modelyard can use"):
        envs.probe(str(script))


def test_a_python_without_modelyard_is_refused_with_what_to_install(home: Path) -> None:
    python = bare_python(home)
    with pytest.raises(InvalidRequest) as caught:
        envs.use(get_plugin_manager(), EnvStore(), "llama.cpp", python)
    assert python in caught.value.message and "install modelyard" in caught.value.message
    assert EnvStore().get("llama.cpp") is None  # nothing recorded


def test_a_different_runner_protocol_is_refused_with_the_command_to_align(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    facts = envs.probe(sys.executable)
    older = msgspec.structs.replace(facts, protocol=PROTOCOL_VERSION - 1, modelyard_version="0.0.1")
    with pytest.raises(InvalidRequest, match=r"protocol .*pip install modelyard=="):
        envs.check_engine("llama.cpp", sys.executable, older)


def test_use_an_interpreter_that_has_the_engine(home: Path) -> None:
    found = envs.use(get_plugin_manager(), EnvStore(), "LLAMA.CPP", sys.executable)
    assert found.engine == "llama.cpp" and found.available and found.library == "xllamacpp"
    assert EnvStore().interpreter("llama.cpp") == sys.executable
    with pytest.raises(InvalidRequest, match="no installed plugin registers an engine 'nope'"):
        envs.use(get_plugin_manager(), EnvStore(), "nope", sys.executable)


def test_the_probe_is_cached_until_the_environment_changes(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = bare_python(home)
    store = EnvStore()
    calls: list[str] = []
    real = probe_module.probe

    def counting(path: str, timeout: float = 60) -> Any:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(probe_module, "probe", counting)
    first = probe_module.cached_probe(store, "llama.cpp", python)
    again = probe_module.cached_probe(store, "llama.cpp", python)
    assert first == again and len(calls) == 1
    site = next(Path(s) for s in first.site)
    (site / "new_package.py").write_text("")  # an install touches site-packages
    os.utime(site, ns=(site.stat().st_atime_ns, site.stat().st_mtime_ns + 1_000_000))
    probe_module.cached_probe(store, "llama.cpp", python)
    assert len(calls) == 2


def test_describe_lists_every_engine_and_explains_a_broken_environment(home: Path) -> None:
    store = EnvStore()
    store.set(EnvConfig(engine="llama.cpp", python=bare_python(home)))
    found = {e.engine: e for e in envs.describe(get_plugin_manager(), store)}
    assert set(found) == set(get_plugin_manager().engines())
    broken = found["llama.cpp"]
    assert broken.own and not broken.available and "install modelyard" in (broken.reason or "")
    transformers = found["Transformers"]
    assert not transformers.own and transformers.python == sys.executable


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_cli_env_use_list_remove(home: Path) -> None:
    assert run("env", "use", "llama.cpp", sys.executable).exit_code == 0
    listed = {e["engine"]: e for e in json.loads(run("env", "list", "--json").stdout)}
    assert listed["llama.cpp"]["own"] and listed["llama.cpp"]["python"] == sys.executable
    assert run("env", "remove", "llama.cpp").exit_code == 0
    missing = run("env", "remove", "llama.cpp")
    assert missing.exit_code == 1 and "has no environment of its own" in missing.output
    refused = run("env", "use", "llama.cpp", "/etc/passwd")
    assert refused.exit_code == 1 and "/etc/passwd is not an executable file" in refused.output


def test_install_needs_pins_from_the_plugin(home: Path) -> None:
    refused = run("env", "install", "example")
    assert refused.exit_code == 1 and "ships no pinned cpu environment" in refused.output
    assert not (home / "envs" / "example").exists()


def test_environments_route(home: Path) -> None:
    from modelyard.server.app import create_app
    from server_support import FakeManager
    from starlette.testclient import TestClient

    EnvStore().set(EnvConfig(engine="llama.cpp", python=sys.executable))
    with TestClient(create_app(FakeManager()), base_url="http://localhost") as client:
        body = client.get("/v1/environments").json()
    rows = {row["engine"]: row for row in body["environments"]}
    assert rows["llama.cpp"]["own"] and rows["llama.cpp"]["available"]
    assert rows["llama.cpp"]["library"] == "xllamacpp"


def test_uv_is_needed_for_install(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.envs import install

    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(install.sys, "executable", bare_python(home))
    with pytest.raises(InvalidRequest, match="pip install uv"):
        install.find_uv()


class FactsEngine:
    """A plugin whose engine's library lives elsewhere: it says yes only when told so by facts."""

    @hookimpl
    def register_engines(self, register: Any) -> None:
        register(
            EngineInfo(
                name="Remote",
                model_types=("LLM",),
                abilities=("chat",),
                formats=("pytorch",),
                library="remote-lib",
                available=False,
                unavailable_reason="remote-lib is not installed here",
            )
        )

    @hookimpl
    def match_engine(
        self, family: Any, spec: Any, quantization: str, hardware: Any, facts: Any
    ) -> Any:
        there = facts.get("Remote")
        if there is None:
            return [Match.no("Remote", "remote-lib is not installed here")]
        if there["supports"] != family.architectures[0]:
            return [Match.no("Remote", f"supports {there['supports']} only")]
        return [Match.yes("Remote")]


REMOTE_ENV = EnvConfig(engine="Remote", python="/x/python")


def test_matching_judges_an_engine_by_its_own_environment() -> None:
    from modelyard.matching import collect_matches
    from modelyard.plugins import PluginManager

    pm = PluginManager()
    pm.register(FactsEngine(), name="facts")
    family = LLMFamily(
        model_name="m",
        model_ability=("chat",),
        context_length=2048,
        architectures=("LlamaForCausalLM",),
        model_specs=(ModelSpec("pytorch", 0.1, ("none",), (ModelSource("local", "/m"),)),),
    )
    spec, cpu = family.model_specs[0], Hardware("linux", "x86_64", 2, 1 << 34, 1 << 34)

    def answer(environments: Any) -> Match:
        [match] = collect_matches(pm, family, spec, "none", cpu, environments)
        return match

    assert answer(None) == Match.no("Remote", "remote-lib is not installed here")
    remote = pm.engine("Remote")
    assert remote is not None
    usable = msgspec.structs.replace(remote, available=True, library_version="1.0")
    there = {
        "remote": envs.EngineState(
            "Remote", REMOTE_ENV, usable, facts={"supports": "LlamaForCausalLM"}
        )
    }
    assert answer(there).ok
    other = {
        "remote": envs.EngineState(
            "Remote", REMOTE_ENV, usable, facts={"supports": "Qwen2ForCausalLM"}
        )
    }
    assert answer(other) == Match.no("Remote", "supports Qwen2ForCausalLM only")
    broken = {
        "remote": envs.EngineState(
            "Remote", REMOTE_ENV, None, reason="/x/python has no usable modelyard"
        )
    }
    assert answer(broken) == Match.no("Remote", "/x/python has no usable modelyard")


def test_states_come_from_each_environment_probe(home: Path) -> None:
    store = EnvStore()
    store.set(EnvConfig(engine="llama.cpp", python=sys.executable))
    store.set(EnvConfig(engine="Transformers", python=bare_python(home)))
    states = envs.states(get_plugin_manager(), store)
    assert set(states) == {"llama.cpp", "transformers"}
    assert states["llama.cpp"].info is not None and states["llama.cpp"].info.available
    assert states["transformers"].info is None and "no usable modelyard" in (
        states["transformers"].reason or ""
    )


def test_prepare_runs_the_owning_plugins_hook_and_refuses_unknown_engines(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`python -m modelyard.envs.prepare ENGINE VARIANT`, which `modelyard env install` runs in the
    new environment: the engine's own plugin prepares it; an engine nobody registers fails."""
    from modelyard.envs import prepare

    assert prepare.main(["example", "cpu"]) == 0  # the example's hook has nothing to do
    assert prepare.main(["NoSuchEngine", "cpu"]) == 1
    assert "'NoSuchEngine'" in capsys.readouterr().err
    assert prepare.main([]) == 2
