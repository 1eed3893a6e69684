"""Per-model environments (Xinference's ``virtualenv``): a family's extra packages are installed,
once, in a layer on its engine's environment, and its runners start there. The example engine
serves the echo model, so only the layer's own cost (uv installing one small package) is paid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


ECHO_FAMILY = {
    "model_name": "echo-with-six",
    "model_type": "LLM",
    "model_ability": ["chat", "generate"],
    "context_length": 512,
    "architectures": ["EchoModel"],
    "model_specs": [
        {
            "model_format": "pytorch",
            "model_size_in_billions": 0.001,
            "quantizations": ["none"],
            "sources": [{"hub": "package", "model_id": "modelyard_example_engine"}],
        }
    ],
}


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def test_a_family_with_extra_packages_runs_in_its_own_layer(
    tmp_path: Path, start_server_with: Callable[..., Server]
) -> None:
    """Xinference's `virtualenv.packages`: the first launch builds a layer with them on the
    engine's environment and the runner starts there; a second launch reuses it."""
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    home = tmp_path / "home"
    home.mkdir()
    # Installing a model's packages runs their code: the server must allow it.
    server = start_server_with(modelyard, home, "--allow-remote-code")
    family = {**ECHO_FAMILY, "virtualenv": {"packages": ["six==1.16.0"]}}
    with server.client() as http:
        registered = http.post(
            "/v1/model_registrations/LLM",
            json={"model": json.dumps(family), "persist": False},
        )
        assert registered.status_code == 200, registered.text
    first = server.launch(model_name="echo-with-six", model_uid="six-1")
    pid = server.describe(first).json()["pid"]
    layer_python = _cmdline(pid)[0]
    assert layer_python.startswith(str(home / "envs" / "models"))
    has_six = subprocess.run(
        [layer_python, "-c", "import six, modelyard; print(six.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert has_six.stdout.strip() == "1.16.0", has_six.stderr  # its own package, and the engine's
    second = server.launch(model_name="echo-with-six", model_uid="six-2")
    assert _cmdline(server.describe(second).json()["pid"])[0] == layer_python  # reused
    with server.client() as http:
        reply = http.post(
            "/v1/chat/completions",
            json={"model": second, "messages": [{"role": "user", "content": "hello there"}]},
        )
    assert (
        reply.status_code == 200
        and "hello there" in reply.json()["choices"][0]["message"]["content"]
    )


def test_packages_need_the_remote_code_flag(server: Server) -> None:
    family = {**ECHO_FAMILY, "model_name": "echo-untrusted", "virtualenv": {"packages": ["six"]}}
    with server.client() as http:
        refused = http.post(
            "/v1/model_registrations/LLM", json={"model": json.dumps(family), "persist": False}
        )
    assert refused.status_code == 403
    assert "--allow-remote-code" in refused.json()["detail"]


def test_a_package_that_is_no_requirement_is_refused_at_registration(server: Server) -> None:
    family = {
        **ECHO_FAMILY,
        "model_name": "echo-bad-pkg",
        "virtualenv": {"packages": ["--index-url=http://example.invalid/simple"]},
    }
    with server.client() as http:
        refused = http.post(
            "/v1/model_registrations/LLM", json={"model": json.dumps(family), "persist": False}
        )
    assert refused.status_code == 400
    assert "packages[0]" in refused.json()["detail"]


def test_a_failed_install_fails_the_launch_with_the_installer_output_and_leaves_nothing(
    tmp_path: Path, start_server_with: Callable[..., Server]
) -> None:
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    home = tmp_path / "home"
    home.mkdir()
    # Installing a model's packages runs their code: the server must allow it.
    server = start_server_with(modelyard, home, "--allow-remote-code")
    family = {
        **ECHO_FAMILY,
        "model_name": "echo-missing-pkg",
        "virtualenv": {"packages": ["modelyard-no-such-package-anywhere==9.9.9"]},
    }
    with server.client(timeout=300) as http:
        assert (
            http.post(
                "/v1/model_registrations/LLM", json={"model": json.dumps(family), "persist": False}
            ).status_code
            == 200
        )
        failed = http.post("/v1/models", json={"model_name": "echo-missing-pkg"})
        assert failed.status_code == 400
        assert "modelyard-no-such-package-anywhere" in failed.json()["detail"]
        assert http.get("/v1/models").json()["data"] == []  # and the server serves on
    layers = home / "envs" / "models"
    assert [p.name for p in layers.iterdir() if not p.name.endswith(".install.log")] == []
