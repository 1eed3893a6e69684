"""Warm runners: after a launch, an idle runner of that engine waits with its modules imported;
the next launch on the engine loads in it. Real server, real llama.cpp, real SmolLM2."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


def _spares(http: httpx.Client) -> list[dict[str, Any]]:
    return http.get("/status").json()["warm_runners"]


def _wait_for_spare(http: httpx.Client, not_pid: int | None = None) -> dict[str, Any]:
    """Poll /status (0.1 s apart) until a spare other than ``not_pid`` waits; a bound on polling."""
    for _ in range(1200):
        spares = [s for s in _spares(http) if s["pid"] != not_pid]
        if spares:
            return spares[0]
        time.sleep(0.1)
    raise AssertionError("no warm runner appeared")


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_the_next_launch_on_an_engine_loads_in_its_warm_runner(
    serving: Callable[..., AbstractContextManager[Server]],
    tmp_path: Path,
    smollm2_gguf: dict[str, str],
) -> None:
    with serving(tmp_path) as server, server.client() as http:
        assert _spares(http) == []  # nothing is kept warm before an engine was used
        first = server.launch(model_uid="first", n_ctx=512, n_parallel=1, **smollm2_gguf)
        spare = _wait_for_spare(http)
        assert spare["engine"] == "llama.cpp"
        assert spare["resident_memory_bytes"] > 0
        assert _parent(spare["pid"]) == server.process.pid  # a runner like any other
        metrics = http.get("/metrics").text
        assert 'modelyard_warm_runner_resident_memory_bytes{engine="llama.cpp"}' in metrics

        second = server.launch(model_uid="second", n_ctx=512, n_parallel=1, **smollm2_gguf)
        assert server.describe(second).json()["pid"] == spare["pid"]
        reply = http.post(
            "/v1/chat/completions",
            json={
                "model": second,
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 3,
            },
        )
        assert reply.status_code == 200 and reply.json()["usage"]["completion_tokens"] > 0
        # Another spare takes its place, for the launch after.
        assert _wait_for_spare(http, not_pid=spare["pid"])["pid"] != spare["pid"]
        server.terminate(first)
        server.terminate(second)


def test_no_warm_runners_keeps_none(
    serving: Callable[..., AbstractContextManager[Server]],
    tmp_path: Path,
    smollm2_gguf: dict[str, str],
) -> None:
    with serving(tmp_path, "--no-warm-runners") as server, server.client() as http:
        first = server.launch(model_uid="first", n_ctx=512, n_parallel=1, **smollm2_gguf)
        first_pid = server.describe(first).json()["pid"]
        server.terminate(first)
        second = server.launch(model_uid="second", n_ctx=512, n_parallel=1, **smollm2_gguf)
        assert server.describe(second).json()["pid"] != first_pid
        assert _spares(http) == []
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        assert children.read_text().split() == [str(server.describe(second).json()["pid"])]
        server.terminate(second)
