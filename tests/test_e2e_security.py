"""Safe to run, end to end: a real `modelyard serve` with keys, model roots and a real llama.cpp
runner, probed the way an attacker (or a careless page) would: missing, wrong and revoked keys,
keys without the scope, paths outside the roots, remote code, the runner's own sockets, the log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import httpx
import openai
import pytest
from proc_sockets import listening
from xinference_client import RESTfulClient

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]

FULL = "e2e-full-key-0123456789"
INFER = "e2e-inference-key-0123456789"


def run_cli(
    command: list[str], home: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args],
        env={**os.environ, "MODELYARD_HOME": str(home), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root with one symlink in it that points out of it."""
    folder = tmp_path_factory.mktemp("root").resolve()
    (folder / "escape").symlink_to("/etc")
    return folder


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
    root: Path,
    serving: Callable[..., AbstractContextManager[Server]],
    test_models: Path,
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("secured-home")
    with serving(
        home,
        "--api-key",
        FULL,
        "--model-root",
        str(root),
        "--model-root",
        str(test_models),
        env={**os.environ, "MODELYARD_API_KEYS": f"{INFER}:inference"},
    ) as running:
        running.api_key = FULL
        yield running


def test_keys_guard_every_route_but_health(secured: Server) -> None:
    assert httpx.get(f"{secured.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{secured.url}/v1/cluster/auth").json() == {"auth": True}
    for path in ("/status", "/v1/models", "/metrics", "/v1/plugins", "/v1/keys"):
        response = httpx.get(f"{secured.url}{path}")
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.get(f"{secured.url}/status", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401
    scoped = httpx.post(
        f"{secured.url}/v1/models", json={"model_name": "x"}, headers={"x-api-key": INFER}
    )
    assert scoped.status_code == 403 and "manage" in scoped.json()["detail"]
    with secured.client() as http:
        assert http.get("/status").status_code == 200
    text = secured.log.read_text()
    assert "nope" not in text and FULL not in text and INFER not in text


def test_cli_and_key_store_with_revocation_without_restart(
    secured: Server, modelyard_command: list[str]
) -> None:
    home = secured.home
    listed = run_cli(modelyard_command, home, "list", "-e", secured.url, "-k", FULL)
    assert listed.returncode == 0, listed.stderr
    keyless = run_cli(modelyard_command, home, "list", "-e", secured.url)
    assert keyless.returncode == 1 and "API key" in keyless.stderr
    made = run_cli(modelyard_command, home, "keys", "create", "--scope", "inference", "--json")
    assert made.returncode == 0, made.stderr
    key, key_id = json.loads(made.stdout)["key"], json.loads(made.stdout)["id"]
    stored = (secured.home / "keys.json").read_text()
    assert key not in stored and key_id in stored
    via_env = run_cli(modelyard_command, home, "list", "-e", secured.url, MODELYARD_API_KEY=key)
    assert via_env.returncode == 0, via_env.stderr
    revoked = run_cli(modelyard_command, home, "keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    after = httpx.get(f"{secured.url}/v1/models", headers={"authorization": f"Bearer {key}"})
    assert after.status_code == 401


OUTSIDE = [
    "/etc/passwd",
    "/etc/no-such-file",
    "relative/weights.gguf",
    "/proc/self/environ",
    "file:///etc/passwd",
    "file:///tmp/../etc/passwd",
]


def test_model_paths_outside_the_roots_are_403_alike(secured: Server, root: Path) -> None:
    paths = [*OUTSIDE, f"{root}/../../etc/passwd", f"{root}/escape/passwd", f"{root}/escape/nope"]
    answers = []
    with secured.client() as http:
        for path in paths:
            response = http.post(
                "/v1/models", json={"model_name": "smollm2-instruct", "model_path": path}
            )
            assert response.status_code == 403, (path, response.text)
            assert "root:" not in response.text
            answers.append(response.json()["detail"].replace(repr(path), "PATH"))
    # Existing or missing, file or folder: one answer.
    assert len(set(answers)) == 1, answers
    assert "--model-root" in answers[0]


def test_registrations_outside_the_roots_are_403(secured: Server, root: Path) -> None:
    with secured.client() as http:
        for uri in ("/etc", "/proc/self", "file:///tmp/../etc", f"{root}/escape", "models/x"):
            family = {
                "version": 2,
                "model_name": "probe",
                "model_lang": ["en"],
                "model_ability": ["embed"],
                "dimensions": 8,
                "max_tokens": 16,
                "model_specs": [
                    {"model_format": "pytorch", "model_uri": uri, "quantization": "none"}
                ],
            }
            response = http.post(
                "/v1/model_registrations/embedding",
                json={"model": json.dumps(family), "persist": False},
            )
            assert response.status_code == 403, (uri, response.text)
        assert "probe" not in http.get("/v1/model_registrations/embedding").text


def test_remote_code_needs_the_server_flag(secured: Server) -> None:
    with secured.client() as http:
        for params in (
            {"trust_remote_code": True},
            {"model_engine": "Transformers", "trust_remote_code": "true"},
        ):
            response = http.post("/v1/models", json={"model_name": "smollm2-instruct", **params})
            assert response.status_code == 403, response.text
            assert "--allow-remote-code" in response.json()["detail"]


@pytest.fixture(scope="module")
def smollm2(secured: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = secured.launch(model_uid="locked", n_ctx=512, n_parallel=1, **smollm2_gguf)
    yield uid
    secured.terminate(uid)


def test_clients_work_with_a_key(secured: Server, smollm2: str) -> None:
    with openai.OpenAI(base_url=f"{secured.url}/v1", api_key=INFER, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(
            model=smollm2,
            messages=[
                {"role": "system", "content": "You are brief."},
                {"role": "user", "content": "Say hi."},
            ],
            max_tokens=4,
        )
        assert reply.usage is not None and reply.usage.completion_tokens > 0
    client = RESTfulClient(secured.url, api_key=FULL)
    try:
        assert smollm2 in client.list_models()
    finally:
        client.close()


def test_bench_sends_the_key(
    secured: Server, smollm2: str, modelyard_command: list[str], tmp_path: Path
) -> None:
    args = ["bench", "--url", secured.url, "--model", smollm2, "--concurrency", "1"]
    args += ["--requests", "1", "--max-tokens", "2", "--rounds", "1"]
    out = tmp_path / "bench.json"
    keyed = run_cli(modelyard_command, secured.home, *args, "-k", INFER, "--json", str(out))
    assert keyed.returncode == 0, keyed.stderr
    assert INFER not in out.read_text()
    keyless = run_cli(modelyard_command, secured.home, *args)
    assert keyless.returncode == 1 and "401" in keyless.stderr


def test_the_runner_opens_no_side_door(secured: Server, smollm2: str) -> None:
    with secured.client() as http:
        pid = http.get(f"/v1/models/{smollm2}").json()["pid"]
    tcp, unix = listening(pid)
    assert tcp == set(), f"the llama.cpp runner listens on TCP {tcp}"
    # The server itself listens on its one port, on 127.0.0.1 only.
    port = int(secured.url.rsplit(":", 1)[1])
    assert listening(secured.process.pid)[0] == {f"0100007F:{port:04X}"}
    # llama.cpp's embedded server listens on a UNIX socket whose folder is already gone.
    assert unix, "llama.cpp's embedded server (a UNIX socket) was expected"
    for sock in unix:
        assert not os.path.exists(sock), sock
        with socket.socket(socket.AF_UNIX) as client, pytest.raises(FileNotFoundError):
            client.connect(sock)


def test_errors_name_no_install_path_and_the_log_escapes_control_characters(
    secured: Server,
) -> None:
    with secured.client() as http:
        # A package-shipped GGUF served by an engine that cannot read it names its file.
        failed = http.post(
            "/v1/models",
            json={
                "model_name": "smollm2-instruct",
                "model_format": "ggufv2",
                "quantization": "Q4_1",
                "n_ctx": "not a number",
            },
        )
        assert failed.status_code == 400
        assert "site-packages" not in failed.text and "/.venv" not in failed.text
    # A refused request's path is logged: a %0A in it must not start a line of its own.
    forged = "x\n2099-01-01 00:00:00,000 WARNING 1 modelyard.server: FORGED \x1b[2J"
    refused = httpx.get(f"{secured.url}/v1/{quote(forged)}")
    assert refused.status_code == 401
    log = secured.log.read_text()
    assert "FORGED" in log and "\n2099-01-01" not in log and "\x1b" not in log
