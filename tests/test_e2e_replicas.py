"""Replicas on one machine: SmolLM2 on llama.cpp in two runner processes behind one uid, driven
by the real clients (openai for inference, xinference-client for its replica calls, the modelyard
CLI to scale) against a real `modelyard serve`."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from e2e_support import capital_of_france, data_events

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def twins(server: Server, smollm2_gguf: dict[str, str]) -> Iterator[str]:
    with server.client(timeout=180) as http:
        made = http.post(
            "/v1/models", json={**smollm2_gguf, "model_uid": "twins", "replica": 2, "n_ctx": 1024}
        )
        assert made.status_code == 200, made.text
        yield "twins"
        http.delete("/v1/models/twins")


def _model(server: Server, uid: str) -> dict[str, Any]:
    with server.client() as http:
        found: dict[str, Any] = http.get(f"/v1/models/{uid}").json()
        return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_two_replicas_serve_one_uid_and_concurrent_streams_use_both(
    server: Server, twins: str
) -> None:
    from openai import OpenAI

    record = _model(server, twins)
    assert record["replica"] == 2 and [r["state"] for r in record["replicas"]] == ["ready"] * 2
    pids = [r["pid"] for r in record["replicas"]]
    assert len(set(pids)) == 2 and all(_alive(pid) for pid in pids)
    # Both runners are this server's children and count in the model's resident memory.
    assert record["resident_memory_bytes"] > 0

    body = {
        "model": twins,
        "messages": [{"role": "user", "content": "Count from one to a hundred."}],
        "max_tokens": 64,
        "stream": True,
        "ignore_eos": True,
    }
    with (
        server.client() as http,
        http.stream("POST", "/v1/chat/completions", json=body) as first,
        http.stream("POST", "/v1/chat/completions", json=body) as second,
    ):
        streams = [first.iter_lines(), second.iter_lines()]
        for lines in streams:
            assert len(data_events(lines, 2)) == 2
        assert [r["in_flight"] for r in _model(server, twins)["replicas"]] == [1, 1]
        ends = [data_events(lines, 10_000)[-1] for lines in streams]
    assert ends == ["data: [DONE]", "data: [DONE]"]

    client = OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    assert "Paris" in capital_of_france(client, twins)


def test_scaling_with_the_cli_and_xinference_clients_replica_calls(
    server: Server, twins: str, modelyard_command: list[str]
) -> None:
    from xinference_client import RESTfulClient

    before = [r["pid"] for r in _model(server, twins)["replicas"]]
    down = subprocess.run(
        [*modelyard_command, "scale", "--endpoint", server.url, "-u", twins, "-r", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0, down.stderr
    assert "twins now runs 1 replica(s): 0 (ready)" in down.stdout  # the newest idle one stopped
    assert not _alive(before[1]) and _alive(before[0])
    listing = subprocess.run(
        [*modelyard_command, "list", "--endpoint", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "1/1" in listing.stdout, listing.stdout

    xinference = RESTfulClient(server.url)
    added = xinference.add_model_replica(twins)
    assert added["replica"] == 2 and [r["index"] for r in added["replicas"]] == [0, 2]
    assert xinference.terminate_model_replica(twins, 0) == 1
    record = _model(server, twins)
    assert [r["index"] for r in record["replicas"]] == [2] and not _alive(before[0])
    progress = xinference.get_launch_model_progress(twins)
    assert [r["replica_model_uid"] for r in progress["replicas"]] == ["twins-2"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("POST", "/v1/models/twins/scale", {"replica": 0}, 400, "replica"),
        ("POST", "/v1/models/twins/scale", {"replicas": 2}, 400, "replicas"),
        ("POST", "/v1/models/twins/replicas", {"model_engine": "vLLM"}, 400, "model_engine"),
        ("DELETE", "/v1/models/twins/replicas/9", None, 404, "replica_id"),
        ("DELETE", "/v1/models/twins/replicas/first", None, 400, "replica_id"),
        ("POST", "/v1/models/nobody/scale", {"replica": 2}, 404, "model"),
    ],
)
def test_bad_scaling_requests_are_errors_that_say_what_to_do(
    server: Server, twins: str, method: str, path: str, body: Any, status: int, param: str
) -> None:
    with server.client() as http:
        answer = http.request(method, path, json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["param"] == param and error["message"]
    assert len(_model(server, twins)["replicas"]) == 2  # nothing changed


def test_the_last_replica_cannot_be_removed(server: Server, twins: str) -> None:
    with server.client() as http:
        assert http.post(f"/v1/models/{twins}/scale", json={"replica": 1}).status_code == 200
        (last,) = _model(server, twins)["replicas"]
        refused = http.delete(f"/v1/models/{twins}/replicas/{last['index']}")
    assert (
        refused.status_code == 400 and "terminate the model" in refused.json()["error"]["message"]
    )
    assert httpx.get(f"{server.url}/v1/models/{twins}").json()["state"] == "ready"
