"""Catalog commands (plugins, registrations, engine, register, unregister, cal-model-mem) in a
private MODELYARD_HOME, through click's CliRunner.

The engine answers come from a small test plugin registered for each test (logic around engines,
no engine library): one GGUF engine that runs anywhere and one that needs a CUDA device, so the
table shows a yes, a no with its reason and the choice. Hardware is fixed for the same reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from modelyard import hookimpl, resources
from modelyard import plugins as plugins_module
from modelyard.cli import main
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

GiB = 1024**3
HARDWARE = Hardware(
    system="linux", machine="x86_64", cpu_count=2, memory_total=24 * GiB, memory_available=20 * GiB
)


class FakeEngines:
    """Two engines: `cpu-gguf` runs GGUF anywhere; `cuda-only` wants a CUDA device."""

    @hookimpl
    def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
        register(
            EngineInfo("cpu-gguf", ("LLM",), ("chat", "generate"), ("ggufv2",), library="fakelib")
        )
        register(
            EngineInfo("cuda-only", ("LLM",), ("chat",), ("ggufv2", "pytorch"), library="fakegpu")
        )

    @hookimpl
    def match_engine(
        self, family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
    ) -> list[Match]:
        answers = [
            Match.yes("cpu-gguf")
            if spec.model_format == "ggufv2"
            else Match.no("cpu-gguf", "serves GGUF only"),
        ]
        if not hardware.has("cuda"):
            answers.append(Match.no("cuda-only", "needs a CUDA device; this machine has none"))
        elif quantization == "Q2_K":
            answers.append(Match.no("cuda-only", "no kernel for Q2_K"))
        else:
            answers.append(Match.yes("cuda-only"))
        return answers

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
        if engine != "cpu-gguf":
            return None
        # Like a real engine: its own parameter names first; it ignores the generic "parallel".
        context = int(params.get("n_ctx") or params.get("context_length") or 4096)
        parallel = int(params.get("n_parallel") or 1)
        return Estimate(
            weights=100 * 2**20,
            kv_cache=context * parallel * 1024,
            overhead=10 * 2**20,
            context_length=context,
            parallel=parallel,
            notes=("fake",),
        )


@pytest.fixture(autouse=True)
def isolated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[plugins_module.PluginManager]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELYARD_ENGINE_PREFERENCE", raising=False)
    pm = plugins_module.PluginManager()
    pm.register(FakeEngines(), name="fake-engines")
    monkeypatch.setattr(plugins_module, "get_plugin_manager", lambda: pm)
    monkeypatch.setattr(resources, "probe_hardware", lambda: HARDWARE)
    yield pm


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    for quantization in ("Q4_0", "Q2_K"):
        (tmp_path / f"tiny-{quantization}.gguf").write_bytes(b"GGUF" + bytes(64))
    return tmp_path / "tiny-Q4_0.gguf"


def family_file(tmp_path: Path, weights: Path, name: str = "my-tiny", **extra: Any) -> Path:
    family = {
        "model_name": name,
        "model_ability": ["chat", "generate"],
        "context_length": 4096,
        "model_specs": [
            {
                "model_format": "ggufv2",
                "model_size_in_billions": 0.5,
                "quantizations": ["Q4_0", "Q2_K"],
                "sources": [
                    {
                        "hub": "local",
                        "model_id": str(weights.parent),
                        "file_name_template": "tiny-{quantization}.gguf",
                    }
                ],
            },
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.5,
                "quantizations": ["none"],
                "sources": [{"hub": "local", "model_id": str(weights.parent)}],
            },
        ],
        **extra,
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(family))
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def registered(model_type: str = "LLM") -> dict[str, dict[str, Any]]:
    rows = json.loads(run("registrations", "-t", model_type, "--json").stdout)
    return {row["model_name"]: row for row in rows}


def test_plugins_json_and_table() -> None:
    data = json.loads(run("plugins", "--json").stdout)
    [plugin] = data["plugins"]
    assert plugin["name"] == "fake-engines"
    assert plugin["engines"] == ["cpu-gguf", "cuda-only"]
    assert {"register_engines", "match_engine", "estimate_resources"} <= set(plugin["hooks"])
    assert [e["name"] for e in data["engines"]] == ["cpu-gguf", "cuda-only"]
    table = run("plugins").stdout
    assert "fake-engines" in table and "cuda-only" in table and "fakegpu" in table


def test_plugins_shows_a_plugin_that_failed_to_load(monkeypatch: pytest.MonkeyPatch) -> None:
    pm = plugins_module.PluginManager()
    monkeypatch.setenv("MODELYARD_DISABLE_PLUGIN_AUTOLOAD", "1")
    monkeypatch.setenv("MODELYARD_PLUGIN_MODULES", "modelyard_no_such_engine_xyz")
    pm.load_entry_points()
    monkeypatch.setattr(plugins_module, "get_plugin_manager", lambda: pm)
    result = run("plugins", "--json")
    [failed] = json.loads(result.stdout)["plugins"]
    assert failed["name"] == "modelyard_no_such_engine_xyz"
    assert "No module named 'modelyard_no_such_engine_xyz'" in failed["error"]
    assert "No module named" in run("plugins").stdout


def test_register_list_unregister(tmp_path: Path, weights: Path) -> None:
    result = run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    assert result.exit_code == 0, result.output
    row = registered()["my-tiny"]
    assert row == {
        "model_name": "my-tiny",
        "model_type": "LLM",
        "is_builtin": False,
        "model_ability": ["chat", "generate"],
        "model_formats": ["ggufv2", "pytorch"],
    }
    assert (tmp_path / "home" / "registrations" / "LLM" / "my-tiny.json").is_file()
    assert "my-tiny" in run("registrations").stdout and "custom" in run("registrations").stdout
    detailed = {
        r["model_name"]: r for r in json.loads(run("registrations", "--detailed", "--json").stdout)
    }
    assert (
        detailed["my-tiny"]["context_length"] == 4096 and detailed["my-tiny"]["is_builtin"] is False
    )

    again = run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    assert again.exit_code == 1 and "'my-tiny' is taken" in again.stderr

    assert run("unregister", "-t", "LLM", "-n", "my-tiny").exit_code == 0
    assert "my-tiny" not in registered()
    assert not (tmp_path / "home" / "registrations" / "LLM" / "my-tiny.json").exists()
    gone = run("unregister", "-t", "LLM", "-n", "my-tiny")
    assert gone.exit_code == 1 and "no custom LLM model is registered as 'my-tiny'" in gone.stderr


def test_register_no_persist_only_validates(tmp_path: Path, weights: Path) -> None:
    result = run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)), "--no-persist")
    assert result.exit_code == 0 and "not persisted" in result.stdout
    assert not (tmp_path / "home" / "registrations" / "LLM" / "my-tiny.json").exists()


def test_register_bad_file_names_file_and_field(tmp_path: Path, weights: Path) -> None:
    bad = family_file(tmp_path, weights, context_length="long")
    result = run("register", "-t", "LLM", "-f", str(bad))
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith(f"Error: {bad}") and "context_length" in line and "int" in line
    assert "Traceback" not in result.output
    assert not (tmp_path / "home" / "registrations" / "LLM").exists() or not any(
        (tmp_path / "home" / "registrations" / "LLM").iterdir()
    )

    mismatch = family_file(tmp_path, weights, name="typed", model_type="embedding")
    result = run("register", "-t", "LLM", "-f", str(mismatch))
    assert result.exit_code == 1 and "model_type 'embedding' but -t says 'LLM'" in result.stderr


def test_register_missing_local_path_is_refused(tmp_path: Path, weights: Path) -> None:
    path = family_file(tmp_path, weights)
    (tmp_path / "tiny-Q2_K.gguf").unlink()
    result = run("register", "-t", "LLM", "-f", str(path))
    assert result.exit_code == 1 and str(tmp_path / "tiny-Q2_K.gguf") in result.stderr
    assert "my-tiny" not in registered()


def test_engine_table_says_who_can_run_and_why_not(tmp_path: Path, weights: Path) -> None:
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    data = json.loads(run("engine", "-n", "my-tiny", "--json").stdout)
    assert data["model_name"] == "my-tiny"
    by_quant = {(s["model_format"], s["quantization"]): s for s in data["specs"]}
    assert set(by_quant) == {("ggufv2", "Q4_0"), ("ggufv2", "Q2_K"), ("pytorch", "none")}
    gguf = by_quant[("ggufv2", "Q4_0")]
    assert gguf["chosen"] == "cpu-gguf"
    assert gguf["engines"]["cuda-only"] == {
        "ok": False,
        "reason": "needs a CUDA device; this machine has none",
    }
    pytorch = by_quant[("pytorch", "none")]
    assert pytorch["chosen"] is None
    assert pytorch["engines"]["cpu-gguf"] == {"ok": False, "reason": "serves GGUF only"}

    table = run("engine", "-n", "my-tiny", "-f", "ggufv2", "-q", "Q4_0")
    assert table.exit_code == 0
    assert "needs a CUDA device" in table.stdout and "Would launch on: cpu-gguf" in table.stdout
    assert "2 CPUs" in table.stderr  # the hardware the answer is for


def test_engine_with_cuda_and_a_requested_engine(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.specs import Accelerator

    gpu = Accelerator(
        kind="cuda", index=0, name="H100", memory_total=80 * GiB, memory_free=80 * GiB
    )
    monkeypatch.setattr(
        resources,
        "probe_hardware",
        lambda: Hardware(**{**_fields(HARDWARE), "accelerators": (gpu,)}),
    )
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    data = json.loads(
        run("engine", "-n", "my-tiny", "-q", "Q2_K", "-e", "cuda-only", "--json").stdout
    )
    [spec] = data["specs"]
    assert spec["chosen"] is None  # the requested engine refused; no silent swap
    assert spec["engines"]["cuda-only"]["reason"] == "no kernel for Q2_K"
    data = json.loads(
        run("engine", "-n", "my-tiny", "-q", "Q4_0", "-en", "cuda-only", "--json").stdout
    )
    assert data["specs"][0]["chosen"] == "cuda-only"


def _fields(hw: Hardware) -> dict[str, Any]:
    return {name: getattr(hw, name) for name in hw.__struct_fields__}


def test_engine_unknown_model_and_unknown_spec(tmp_path: Path, weights: Path) -> None:
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    result = run("engine", "-n", "my-tinny")
    assert result.exit_code == 1 and "my-tiny" in result.stderr  # close match offered
    result = run("engine", "-n", "my-tiny", "-f", "awq")
    assert result.exit_code == 1 and "ggufv2" in result.stderr  # says what exists


def test_cal_model_mem_uses_the_chosen_engines_estimate(tmp_path: Path, weights: Path) -> None:
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    result = run(
        "cal-model-mem",
        "-n",
        "my-tiny",
        "-s",
        "0_5",
        "-f",
        "ggufv2",
        "-q",
        "Q4_0",
        "-c",
        "2048",
        "--n-parallel",
        "2",
        "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["engine"] == "cpu-gguf"
    assert data["kv_cache"] == 2048 * 2 * 1024
    assert data["total"] == 100 * 2**20 + 2048 * 2 * 1024 + 10 * 2**20
    assert (data["context_length"], data["parallel"], data["quantization"]) == (2048, 2, "Q4_0")
    assert data["ignored"] == []
    text = run(
        "cal-model-mem", "-n", "my-tiny", "-f", "ggufv2", "-q", "Q4_0", "--param", "n_ctx=1024"
    )
    assert "cpu-gguf" in text.stdout and "weights:" in text.stdout and "total:" in text.stdout
    assert "context 1024" in text.stdout and text.stderr == ""


def test_cal_model_mem_warns_when_the_engine_ignores_an_option(
    tmp_path: Path, weights: Path
) -> None:
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    result = run("cal-model-mem", "-n", "my-tiny", "-f", "ggufv2", "-q", "Q4_0", "--parallel", "3")
    assert result.exit_code == 0
    assert "does not use --parallel 3 (it assumed 1)" in result.stderr
    data = json.loads(
        run("cal-model-mem", "-n", "my-tiny", "-f", "ggufv2", "--parallel", "3", "--json").stdout
    )
    assert data["ignored"] == ["--parallel 3 (it assumed 1)"]


def test_cal_model_mem_falls_back_to_the_generic_estimate(tmp_path: Path, weights: Path) -> None:
    run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights)))
    small = json.loads(
        run(
            "cal-model-mem",
            "-n",
            "my-tiny",
            "-f",
            "pytorch",
            "-c",
            "1024",
            "--parallel",
            "2",
            "--json",
        ).stdout
    )
    large = json.loads(
        run(
            "cal-model-mem",
            "-n",
            "my-tiny",
            "-f",
            "pytorch",
            "-c",
            "8192",
            "--parallel",
            "2",
            "--json",
        ).stdout
    )
    assert small["ignored"] == [] and small["parallel"] == 2
    assert small["engine"] is None and any("generic" in note for note in small["notes"])
    assert small["weights"] == large["weights"] > 0
    assert large["kv_cache"] == 8 * small["kv_cache"] > 0


def test_registrations_lists_the_builtin_catalog_by_type() -> None:
    rerank = registered("rerank")
    assert rerank and all(
        row["model_type"] == "rerank" and row["is_builtin"] for row in rerank.values()
    )
    assert "bge-reranker-base" in rerank
    everything = json.loads(run("registrations", "--json").stdout)
    types = {row["model_type"] for row in everything}
    assert types == {"LLM", "embedding", "rerank"}
    assert sum(row["model_type"] == "LLM" for row in everything) >= 25
    smol = registered()["smollm2-instruct"]
    assert "chat" in smol["model_ability"] and "ggufv2" in smol["model_formats"]


def test_plugins_lists_an_installed_entry_point_with_its_distribution(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    if importlib.util.find_spec("modelyard_example_engine") is None:
        pytest.skip(
            "the example engine plugin is not installed (uv pip install -e tests/example_engine)"
        )
    monkeypatch.setenv("MODELYARD_PLUGINS", "example")  # allow-list: just the example entry point
    pm = plugins_module.PluginManager()
    pm.load_entry_points()
    monkeypatch.setattr(plugins_module, "get_plugin_manager", lambda: pm)
    [plugin] = json.loads(run("plugins", "--json").stdout)["plugins"]
    assert (plugin["name"], plugin["distribution"]) == ("example", "modelyard-example-engine")
    assert plugin["version"] and plugin["engines"] == ["example"]
    assert "modelyard-example-engine" in run("plugins").stdout


@pytest.mark.parametrize("engine", ["example", "Example", "EXAMPLE"])
def test_cal_model_mem_reaches_the_owning_plugin_in_any_case(
    engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example plugin's own estimate (1 MiB, its note), never the generic fallback."""
    pytest.importorskip("modelyard_example_engine")
    monkeypatch.setenv("MODELYARD_PLUGINS", "example")
    pm = plugins_module.PluginManager()
    pm.load_entry_points()
    monkeypatch.setattr(plugins_module, "get_plugin_manager", lambda: pm)
    out = run("cal-model-mem", "-n", "echo", "-e", engine, "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert "echo model: no weights" in result["notes"]
    assert result["total"] == 1024 * 1024


def test_a_broken_registration_file_is_listed_as_broken_and_the_rest_works(
    tmp_path: Path, weights: Path
) -> None:
    folder = tmp_path / "home" / "registrations" / "LLM"
    folder.mkdir(parents=True)
    (folder / "half-written.json").write_bytes(b'{"model_name": "half-wr')
    assert run("register", "-t", "LLM", "-f", str(family_file(tmp_path, weights))).exit_code == 0
    rows = registered()
    assert "my-tiny" in rows and rows["my-tiny"]["is_builtin"] is False
    assert rows["half-written"]["broken"] is True
    assert "half-written.json" in rows["half-written"]["error"]
    assert "not valid JSON" in rows["half-written"]["error"]
    table = run("registrations")
    assert "broken" in table.stdout and "my-tiny" in table.stdout
    assert "half-written" in table.stderr and "not valid JSON" in table.stderr
