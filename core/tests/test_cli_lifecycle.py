"""Lifecycle commands (launch, list, terminate, chat, generate) against a stub server over HTTP."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from click.testing import CliRunner, Result
from modelyard.cli import main
from modelyard.cli.options import DEFAULT_ENDPOINT
from modelyard.client import DEFAULT_ENDPOINT as CLIENT_DEFAULT


def load_stub() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "modelyard_test_stub", Path(__file__).with_name("test_client_stub.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stub_module = load_stub()


@pytest.fixture
def stub() -> Any:
    return stub_module.Stub()


@pytest.fixture
def endpoint(stub: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with stub_module.serving(stub) as url:
        monkeypatch.setenv("MODELYARD_ENDPOINT", url)
        yield url


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_default_endpoint_matches_the_client() -> None:
    assert DEFAULT_ENDPOINT == CLIENT_DEFAULT


def test_launch_passes_engine_params_through(endpoint: str, stub: Any) -> None:
    result = run(
        "launch", "-n", "smollm2-instruct", "-en", "llama.cpp", "-f", "ggufv2", "-s", "0_135", "-q", "Q4_1",
        "-u", "smol", "--n-ctx", "2048", "--flash_attn", "--sampling.top_k=20", "--param", "n_parallel=2",
        "--rope-scale", "0.5", "--cache-type", "q8_0", "--no-wait",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Model uid: smol"
    body, query = stub.last("/v1/models")
    assert body["model_engine"] == "llama.cpp"
    assert body["model_size_in_billions"] == 0.135
    assert body["quantization"] == "Q4_1" and body["model_format"] == "ggufv2"
    assert {k: body[k] for k in ("n_ctx", "flash_attn", "sampling.top_k", "n_parallel", "rope_scale", "cache_type")} == {
        "n_ctx": 2048, "flash_attn": True, "sampling.top_k": 20, "n_parallel": 2, "rope_scale": 0.5, "cache_type": "q8_0",
    }  # fmt: skip
    assert query == {"wait_ready": "false"}


def test_launch_follows_progress_and_says_which_engine_and_why(endpoint: str, stub: Any) -> None:
    result = run(
        "launch", "hf:HuggingFaceTB/SmolLM2-135M-Instruct", "-u", "smol", "--keep-alive", "5m"
    )
    assert result.exit_code == 0, result.output
    body, query = stub.last("/v1/models")
    assert body["model_name"] == "hf:HuggingFaceTB/SmolLM2-135M-Instruct"
    assert body["keep_alive"] == "5m" and query == {"wait_ready": "false"}
    stub.last("/v1/models/smol/progress")  # it was followed
    assert "Engine: stub-engine" in result.stderr
    assert "Can run it (best first): stub-engine" in result.stderr


def test_launch_rejects_a_stray_argument_and_a_bad_size(endpoint: str) -> None:
    result = CliRunner().invoke(main, ["launch", "-n", "x", "oops"])
    assert result.exit_code == 2 and "unexpected argument 'oops'" in result.output
    result = CliRunner().invoke(main, ["launch", "-n", "x", "-s", "big"])
    assert result.exit_code == 2 and "not a number of billions" in result.output


def test_launch_error_is_one_red_line_and_exit_1(endpoint: str) -> None:
    result = run("launch", "-n", "nope")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: model 'nope' is not in the catalog; close matches: none"
    assert "Traceback" not in result.output


def test_unreachable_server_is_a_clean_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run("list", "-e", f"http://127.0.0.1:{port}")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: cannot reach the modelyard server at http://127.0.0.1:{port}"
    )
    assert len(result.stderr.strip().splitlines()) == 1


def test_list_json_table_and_terminate(endpoint: str, stub: Any) -> None:
    assert "No model is running" in run("list").stderr
    run("launch", "-n", "qwen3", "-u", "q1")
    run("launch", "-n", "bge", "-t", "embedding")
    listed = json.loads(run("list", "--json").stdout)
    assert [m["id"] for m in listed] == ["q1", "bge"]
    assert listed[1]["model_type"] == "embedding"
    table = run("list").stdout
    assert "q1" in table and "qwen3" in table and "embedding" in table and "stub-engine" in table
    result = run("terminate", "-u", "q1")
    assert result.exit_code == 0 and "Terminated q1" in result.stdout
    assert list(stub.models) == ["bge"]
    result = run("terminate", "-u", "q1")
    assert result.exit_code == 1 and "'q1' is not running" in result.stderr


def test_chat_one_shot_streams_the_reply(endpoint: str, stub: Any) -> None:
    run("launch", "-n", "m")
    result = run(
        "chat", "-u", "m", "--message", "hello there", "--max-tokens", "7", "--system", "be brief"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "reply 2 to hello there\n"
    body, _ = stub.last("/v1/chat/completions")
    assert body["stream"] is True and body["max_tokens"] == 7
    assert body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]


def test_chat_interactive_keeps_history(endpoint: str, stub: Any) -> None:
    run("launch", "-n", "m")
    result = run("chat", "-u", "m", "--no-stream", input="first\nsecond\nexit\n")
    assert result.exit_code == 0, result.output
    assert "reply 1 to first" in result.stdout and "reply 3 to second" in result.stdout
    assert "\x1b" not in result.stdout  # no colour codes when stdout is not a terminal
    body, _ = stub.last("/v1/chat/completions")
    assert body["messages"] == [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply 1 to first"},
        {"role": "user", "content": "second"},
    ]


def test_chat_ends_cleanly_at_end_of_input(endpoint: str) -> None:
    run("launch", "-n", "m")
    result = run("chat", "-u", "m", input="only\n")
    assert result.exit_code == 0, result.output
    assert "reply 1 to only" in result.stdout


def test_chat_refuses_a_model_that_cannot_chat(endpoint: str) -> None:
    run("launch", "-n", "e", "-t", "embedding")
    result = run("chat", "-u", "e", "-m", "hi")
    assert result.exit_code == 1 and "cannot chat" in result.stderr and "embedding" in result.stderr


def test_chat_error_mid_stream_is_reported(endpoint: str) -> None:
    run("launch", "-n", "m")
    result = run("chat", "-u", "m", "-m", "boom")
    assert result.exit_code == 1
    assert "Error: the engine ran out of memory" in result.stderr


def test_generate_streams_and_not(endpoint: str, stub: Any) -> None:
    run("launch", "-n", "base-only")
    result = run("generate", "-u", "base-only", "-p", "Once", "--temperature", "0")
    assert result.exit_code == 0, result.output
    assert result.stdout == " and so on\n"
    body, _ = stub.last("/v1/completions")
    assert body == {"model": "base-only", "prompt": "Once", "temperature": 0.0, "stream": True}
    assert run("generate", "-u", "base-only", "-p", "Once", "--no-stream").stdout == " and so on\n"


def test_api_key_is_sent_as_bearer(
    endpoint: str, stub: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str | None] = []
    original = stub.list_models

    async def spy(request: Any) -> Any:
        seen.append(request.headers.get("authorization"))
        return await original(request)

    stub.list_models = spy
    with stub_module.serving(stub) as url:
        monkeypatch.setenv("MODELYARD_API_KEY", "k1")
        assert run("list", "-e", url).exit_code == 0
    assert seen == ["Bearer k1"]
