"""One `modelyard serve` from the main environment, two engines in two Python environments:
SmolLM2 GGUF on llama.cpp (the server's own environment) and SmolLM2 safetensors on vLLM (its own,
built by `modelyard env install vLLM`), side by side, both answering through the openai client.

Needs the vLLM environment's interpreter in MODELYARD_TEST_VLLM_PYTHON: the vLLM CI step
(plugins/engine-vllm/scripts/test.sh) builds it and runs this module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from local_families import smollm2_family

if TYPE_CHECKING:
    from conftest import Server

VLLM_PYTHON = os.environ.get("MODELYARD_TEST_VLLM_PYTHON")
MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS", Path(__file__).parents[1] / ".models"))

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not VLLM_PYTHON,
        reason="needs MODELYARD_TEST_VLLM_PYTHON, a vLLM environment's interpreter "
        "(plugins/engine-vllm/scripts/test.sh builds one with `modelyard env install vLLM`)",
    ),
]
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]
SAFETENSORS_FAMILY = smollm2_family("local-smollm2-envs", MODELS / "smollm2-135m-instruct")


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_llamacpp_and_vllm_serve_side_by_side_from_one_server(
    tmp_path: Path,
    start_server_with: Callable[..., Server],
    smollm2_gguf: dict[str, str],
) -> None:
    assert VLLM_PYTHON is not None
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    home = tmp_path / "home"
    home.mkdir()
    used = subprocess.run(
        [modelyard, "env", "use", "vLLM", VLLM_PYTHON],
        env={**os.environ, "MODELYARD_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert used.returncode == 0, used.stderr
    server = start_server_with(modelyard, home, "--model-root", str(MODELS))
    with server.client(timeout=900) as http:
        listed = {e["engine"]: e for e in http.get("/v1/environments").json()["environments"]}
        assert listed["vLLM"]["own"] and listed["vLLM"]["available"], listed["vLLM"]
        assert listed["llama.cpp"]["python"] == sys.executable
        registered = http.post(
            "/v1/model_registrations/LLM",
            json={"model": json.dumps(SAFETENSORS_FAMILY), "persist": False},
        )
        assert registered.status_code == 200, registered.text
    # No engine named: the core picks vLLM for safetensors (its environment says it can run it).
    vllm_uid = server.launch(
        timeout=900, model_name="local-smollm2-envs", model_uid="smol-vllm", max_model_len=2048
    )
    gguf_uid = server.launch(model_uid="smol-gguf", **smollm2_gguf)
    engines = {uid: server.describe(uid).json() for uid in (vllm_uid, gguf_uid)}
    assert engines[vllm_uid]["model_engine"] == "vLLM"
    assert engines[gguf_uid]["model_engine"] == "llama.cpp"
    # Each runner started with its engine's interpreter.
    assert _cmdline(engines[vllm_uid]["pid"])[0] == VLLM_PYTHON
    assert _cmdline(engines[gguf_uid]["pid"])[0] == sys.executable

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        for uid in (vllm_uid, gguf_uid):
            reply = client.chat.completions.create(
                model=uid,
                messages=QUESTION,
                max_tokens=12,
                temperature=0,  # type: ignore[arg-type]
            )
            assert "Paris" in (reply.choices[0].message.content or ""), uid
        server.terminate(vllm_uid)
        after = client.chat.completions.create(
            model=gguf_uid,
            messages=QUESTION,
            max_tokens=12,
            temperature=0,  # type: ignore[arg-type]
        )
    assert "Paris" in (after.choices[0].message.content or "")
    with httpx.Client(base_url=server.url) as http:
        assert http.get(f"/v1/models/{vllm_uid}").status_code == 404
