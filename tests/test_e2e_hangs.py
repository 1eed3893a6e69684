"""Hung runners and deadlines through a real `modelyard serve` with llama.cpp and SmolLM2: a runner
stopped with SIGSTOP is noticed by the heartbeat, shown `unresponsive`, refused with 503, killable,
and restarted when asked; a request past its deadline ends with a 504."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def _wait_for(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    """Poll until predicate() holds; the bound is against a hang, not a speed assertion."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def _state(http: httpx.Client, uid: str) -> str:
    return http.get(f"/v1/models/{uid}").json().get("state", "?")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _resume(pid: int) -> None:
    if _alive(pid):
        os.kill(pid, signal.SIGCONT)


def test_a_stopped_runner_is_unresponsive_503_then_serves_again(
    server: Server, smollm2_gguf: dict[str, str]
) -> None:
    uid = server.launch(model_uid="sleepy", n_ctx=512, **smollm2_gguf)
    pid = server.describe(uid).json()["pid"]
    chat = {"model": uid, "messages": [SYSTEM, {"role": "user", "content": "Hi"}], "max_tokens": 3}
    with server.client() as http:
        os.kill(pid, signal.SIGSTOP)
        try:
            _wait_for(lambda: _state(http, uid) == "unresponsive", "the heartbeat to notice")
            listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
            assert listed[uid]["state"] == "unresponsive"
            assert "heartbeat" in listed[uid]["error"]
            assert 'modelyard_models{state="unresponsive"} 1.0' in http.get("/metrics").text
            refused = http.post("/v1/chat/completions", json=chat)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "model_unresponsive"
            assert "restart_unresponsive" in refused.json()["detail"]
        finally:
            _resume(pid)
        _wait_for(lambda: _state(http, uid) == "ready", "the runner to answer again")
        assert http.post("/v1/chat/completions", json=chat).status_code == 200
    server.terminate(uid)


def test_terminate_kills_a_hung_runner(server: Server, smollm2_gguf: dict[str, str]) -> None:
    uid = server.launch(model_uid="hung", n_ctx=512, **smollm2_gguf)
    pid = server.describe(uid).json()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with server.client() as http:
            _wait_for(lambda: _state(http, uid) == "unresponsive", "the heartbeat to notice")
            assert http.delete(f"/v1/models/{uid}").status_code == 200
            assert http.get(f"/v1/models/{uid}").status_code == 404
        assert not _alive(pid)
    finally:
        _resume(pid)


def test_restart_unresponsive_brings_a_fresh_runner(
    server: Server, smollm2_gguf: dict[str, str]
) -> None:
    uid = server.launch(model_uid="phoenix", n_ctx=512, restart_unresponsive=True, **smollm2_gguf)
    pid = server.describe(uid).json()["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        with server.client() as http:

            def restarted() -> bool:
                described = http.get(f"/v1/models/{uid}").json()
                return described.get("restarts") == 1 and described.get("state") == "ready"

            _wait_for(restarted, "the restart", seconds=120)
            assert http.get(f"/v1/models/{uid}").json()["pid"] != pid
            assert not _alive(pid)
            reply = http.post(
                "/v1/chat/completions",
                json={
                    "model": uid,
                    "messages": [SYSTEM, {"role": "user", "content": "Hi"}],
                    "max_tokens": 3,
                },
            )
            assert reply.status_code == 200, reply.text
    finally:
        _resume(pid)
    server.terminate(uid)


def test_a_request_past_its_deadline_is_a_504(server: Server, smollm2_gguf: dict[str, str]) -> None:
    uid = server.launch(model_uid="slowpoke", n_ctx=2048, request_timeout=1, **smollm2_gguf)
    long = {
        "model": uid,
        "messages": [SYSTEM, {"role": "user", "content": "Tell me a very long story."}],
        "max_tokens": 1500,
        "ignore_eos": True,
    }
    with server.client() as http:
        response = http.post("/v1/chat/completions", json=long)
        assert response.status_code == 504, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("timeout_error", "request_timeout")
        assert "request_timeout of 1 s" in error["message"]
        with http.stream("POST", "/v1/chat/completions", json={**long, "stream": True}) as stream:
            # A deadline before the first token is a plain 504; after it, a final error event.
            if stream.status_code == 200:
                events = [line for line in stream.iter_lines() if line.startswith("data: ")]
                assert '"timeout_error"' in events[-1]
            else:
                stream.read()
                assert stream.status_code == 504, stream.text
        quick = {**long, "max_tokens": 2, "ignore_eos": False}
        assert http.post("/v1/chat/completions", json=quick).status_code == 200
    server.terminate(uid)
