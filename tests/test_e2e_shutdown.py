"""SIGTERM to a real `modelyard serve` with a stream in flight on llama.cpp: the stream ends with a
final error event, every runner stops, and the server exits without waiting out the stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_ends_streams_with_an_error_event_and_stops_every_runner(
    tmp_path: Path,
    smollm2_gguf: dict[str, str],
    serving: Callable[..., AbstractContextManager[Server]],
) -> None:
    with serving(tmp_path / "home", "--shutdown-timeout", "5") as running:
        _sigterm_during_a_stream(running, smollm2_gguf)


def _sigterm_during_a_stream(running: Server, smollm2_gguf: dict[str, str]) -> None:
    pids = []
    for uid in ("first", "second"):
        launched = running.launch(model_uid=uid, n_ctx=2048, **smollm2_gguf)
        pids.append(running.describe(launched).json()["pid"])
    events: list[str] = []
    first_chunk = threading.Event()

    def read_stream() -> None:
        body = {
            "model": "first",
            "messages": [{"role": "user", "content": "Tell me a very long story."}],
            "max_tokens": 1800,
            "ignore_eos": True,
            "stream": True,
        }
        with (
            httpx.Client(base_url=running.url, timeout=120) as http,
            http.stream("POST", "/v1/chat/completions", json=body) as stream,
        ):
            for line in stream.iter_lines():
                if line.startswith("data: "):
                    events.append(line.removeprefix("data: "))
                    first_chunk.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert first_chunk.wait(120), "no chunk arrived"
    sent = time.monotonic()
    running.process.send_signal(signal.SIGTERM)
    try:
        code = running.process.wait(timeout=60)  # a bound on a hang; the figure is logged below
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server did not exit:\n{running.log.read_text()[-3000:]}")
    print(f"server exited {time.monotonic() - sent:.2f} s after SIGTERM")
    reader.join(timeout=30)
    assert not reader.is_alive()
    # uvicorn re-raises the signal it caught once it has shut down cleanly: -SIGTERM is a clean exit.
    assert code in (0, -signal.SIGTERM), running.log.read_text()[-3000:]
    assert "Application shutdown complete" in running.log.read_text()
    last = json.loads(events[-1])
    assert last["error"]["type"] == "service_unavailable"
    assert "shutting down" in last["error"]["message"]
    assert len(events) > 2  # tokens streamed before the end
    for pid in pids:
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), f"runner {pid} outlived the server"
    assert "Cancel" not in running.log.read_text()  # uvicorn never had to cancel the stream
