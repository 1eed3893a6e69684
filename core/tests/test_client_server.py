"""The client and the lifecycle CLI against a real `modelyard serve` process.

The server runs the example engine plugin (tests/example_engine: a real plugin whose toy `echo`
models need no weights) in real runner subprocesses, so this checks the client's request shapes,
SSE parsing and error mapping against the server as it really answers, on any machine. Real
engines with real models are driven end to end in tests/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from modelyard.cli import main
from modelyard.client import ChatModelHandle, Client, EmbeddingModelHandle
from modelyard.errors import Conflict, ContextLengthExceeded, ModelNotFound, ModelyardError

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("modelyard_example_engine") is None,
        reason="the example engine plugin is not installed (uv pip install -e tests/example_engine)",
    ),
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("home")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "MODELYARD_HOME": str(home),
        "MODELYARD_DISABLE_PLUGIN_AUTOLOAD": "1",
        "MODELYARD_PLUGIN_MODULES": "modelyard_example_engine",
    }
    log = home / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                pytest.fail(f"modelyard serve exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(base + "/status", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail(f"modelyard serve did not answer in 60 s:\n{log.read_text()}")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_client_lifecycle_chat_generate_embed(url: str) -> None:
    with Client(url) as client:
        uid = client.launch_model("echo", model_uid="echo-c")
        assert uid == "echo-c"
        models = client.list_models()
        assert (
            models["echo-c"]["model_name"] == "echo"
            and models["echo-c"]["model_engine"] == "example"
        )
        model = client.get_model(uid)
        assert isinstance(model, ChatModelHandle)

        messages = [{"role": "user", "content": "the quick brown fox"}]
        result = model.chat(messages)
        assert isinstance(result, dict)
        assert result["choices"][0]["message"]["content"] == "the quick brown fox"
        assert result["usage"]["completion_tokens"] == 4

        chunks = list(model.chat(messages, stream=True, max_tokens=2))
        text = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
        )
        assert text.strip() == "the quick"

        pieces = list(model.generate("one two three", stream=True))
        assert (
            "".join(c["choices"][0]["text"] for c in pieces if c.get("choices")).strip()
            == "one two three"
        )

        with pytest.raises(ContextLengthExceeded, match="context"):
            model.chat([{"role": "user", "content": "word " * 3000}])
        with pytest.raises(Conflict):
            client.launch_model("echo", model_uid="echo-c")

        emb_uid = client.launch_model("echo-embedding", model_type="embedding")
        emb = client.get_model(emb_uid)
        assert isinstance(emb, EmbeddingModelHandle)
        data = emb.create_embedding(["a", "b"])["data"]
        assert (
            len(data) == 2
            and len(data[0]["embedding"]) == 8
            and data[0]["embedding"] != data[1]["embedding"]
        )

        client.terminate_model(uid)
        client.terminate_model(emb_uid)
        assert client.list_models() == {}
        with pytest.raises(ModelNotFound):
            client.describe_model(uid)


def test_client_launch_error_says_why(url: str) -> None:
    with Client(url) as client, pytest.raises(ModelyardError) as info:
        client.launch_model("ecko")
    assert (
        info.value.status in (400, 404) and "echo" in info.value.message
    )  # a close match is offered
    with Client(url) as client:
        assert client.list_models() == {}  # no stale model left behind


def test_client_registrations_and_engines(url: str, tmp_path: Path) -> None:
    with Client(url) as client:
        names = {r["model_name"]: r["is_builtin"] for r in client.list_model_registrations("LLM")}
        assert "echo" in names
        engines = client.query_engine_by_model_name("echo")
        assert (
            isinstance(engines["example"], list) and engines["example"][0]["model_name"] == "echo"
        )


def test_cli_against_the_server(url: str) -> None:
    runner = CliRunner(env={"MODELYARD_ENDPOINT": url})
    result = runner.invoke(main, ["launch", "-n", "echo", "-u", "echo-cli"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Model uid: echo-cli"
    listed = json.loads(runner.invoke(main, ["list", "--json"]).stdout)
    assert [(m["id"], m["model_engine"]) for m in listed] == [("echo-cli", "example")]

    chat = runner.invoke(main, ["chat", "-u", "echo-cli", "-m", "hello there world"])
    assert chat.exit_code == 0, chat.output
    assert chat.stdout.strip() == "hello there world"
    interactive = runner.invoke(main, ["chat", "-u", "echo-cli"], input="first words\nsecond\n")
    assert interactive.exit_code == 0, interactive.output
    assert "first words" in interactive.stdout and "second" in interactive.stdout
    generate = runner.invoke(
        main, ["generate", "-u", "echo-cli", "-p", "alpha beta", "--max-tokens", "1"]
    )
    assert generate.stdout.strip() == "alpha"

    bad_param = runner.invoke(
        main, ["launch", "-n", "echo", "-u", "echo-bad", "--no-such-knob", "3"]
    )
    assert bad_param.exit_code == 1 and "no_such_knob" in bad_param.stderr

    assert runner.invoke(main, ["terminate", "-u", "echo-cli"]).exit_code == 0
    missing = runner.invoke(main, ["chat", "-u", "echo-cli", "-m", "hi"])
    assert (
        missing.exit_code == 1
        and "echo-cli" in missing.stderr
        and "Traceback" not in missing.output
    )
