"""What the benches share: free ports, server processes, readiness waits and one streamed chat.

Imported by the scripts beside it as `from _harness import ...` (a script's folder is on sys.path).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx
from modelyard.runner.manager import openmp_waiting

# modelyard's runners wait in OpenMP briefly, then sleep (runner.manager.openmp_waiting); an
# engine's own server compared with it gets the same, so that a side-by-side run measures the
# serving path rather than the waiting policy.
SAME_OPENMP_WAITING = openmp_waiting(os.environ)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running(
    argv: list[str], env: dict[str, str], log: Path, grace: float = 30
) -> Iterator[subprocess.Popen[bytes]]:
    """Run argv with stdout and stderr into log; terminate it on exit, killed after grace s."""
    with log.open("wb") as out:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 900,
    interval: float = 0.2,
) -> float:
    """Seconds until url answers 200; exits with the log's tail if the process dies or time runs out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        time.sleep(interval)
    raise SystemExit(f"{url} did not answer in {timeout} s:\n{log.read_text()[-4000:]}")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (utime + stime) each thread of process pid has used, from /proc/PID/task/*/stat."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:  # after the ")" that ends the thread's name: state, ppid, ... utime (12th), stime
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        used[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return used


class Serve(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]
    ready: float  # seconds from the spawn to the first 200 on /status


@contextmanager
def modelyard_serve(
    env: dict[str, str],
    *extra: str,
    timeout: float = 900,
    interval: float = 0.2,
    grace: float = 30,
) -> Iterator[Serve]:
    """`modelyard serve` from this python's environment with a throwaway MODELYARD_HOME, ready."""
    exe = Path(sys.executable).with_name("modelyard")
    if not exe.exists():
        raise SystemExit("the `modelyard` command is not installed beside this python")
    port = free_port()
    argv = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="modelyard-bench-", ignore_cleanup_errors=True) as tmp:
        home, started = Path(tmp), time.perf_counter()
        log = home / "serve.log"
        with running(argv, {**env, "MODELYARD_HOME": str(home)}, log, grace) as process:
            wait_for(f"{url}/status", process, log, timeout, interval)
            yield Serve(url, process, time.perf_counter() - started)


def chat_body(prompt: str, tokens: int) -> dict[str, Any]:
    """A greedy streamed chat request that generates exactly `tokens` tokens (ignore_eos)."""
    return {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def has_text(chunk: dict[str, Any]) -> bool:
    """Whether a chat completion chunk carries generated text."""
    return any((c.get("delta") or {}).get("content") for c in chunk.get("choices", ()))


class Streamed(NamedTuple):
    tokens: int  # completion tokens, from the final usage chunk
    ttft: float  # seconds from `start` to the first generated text; NaN if none came


async def stream_chat(
    client: httpx.AsyncClient, model: str, prompt: str, tokens: int, start: float | None = None
) -> Streamed:
    """One streamed chat completion, timed from start (default: now; perf_counter clock)."""
    start = time.perf_counter() if start is None else start
    ttft, used = float("nan"), 0
    body = {"model": model, **chat_body(prompt, tokens)}
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            raise SystemExit(f"HTTP {response.status_code}: {(await response.aread()).decode()}")
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue  # comments, blank lines and the final [DONE]
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise SystemExit(f"stream error: {chunk['error']}")
            if ttft != ttft and has_text(chunk):
                ttft = time.perf_counter() - start
            if chunk.get("usage"):
                used = int(chunk["usage"]["completion_tokens"])
    return Streamed(used, ttft)


def smollm2_family(model_dir: Path, context_length: int) -> dict[str, Any]:
    """A custom LLM family for the prepared SmolLM2-135M-Instruct safetensors folder."""
    return {
        "model_name": "bench-smollm2",
        "model_type": "LLM",
        "model_ability": ["chat", "generate"],
        "context_length": context_length,
        "architectures": ["LlamaForCausalLM"],
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.135,
                "quantizations": ["none"],
                "sources": [{"hub": "local", "model_id": str(model_dir)}],
            }
        ],
    }


def register_and_launch(url: str, family: dict[str, Any], **launch: Any) -> str:
    """Register ``family`` (not persisted) on the server at ``url`` and launch it; its uid."""
    with httpx.Client(base_url=url, timeout=900) as http:
        registered = http.post(
            f"/v1/model_registrations/{family['model_type']}",
            json={"model": json.dumps(family), "persist": False},
        )
        registered.raise_for_status()
        launched = http.post("/v1/models", json={"model_name": family["model_name"], **launch})
        if launched.status_code != 200:
            raise SystemExit(f"launch failed: {launched.text}")
        return str(launched.json()["model_uid"])


def bench_command(
    targets: list[tuple[str, str]],
    *,
    concurrency: str,
    requests: int,
    max_tokens: int,
    rounds: int,
    json_file: str | Path | None = None,
) -> list[str]:
    """`modelyard bench` (from this python's environment) against each (url, model) target."""
    command = [str(Path(sys.executable).with_name("modelyard")), "bench"]
    for url, model in targets:
        command += ["--url", url, "--model", model]
    command += ["--concurrency", concurrency, "--requests", str(requests)]
    command += ["--max-tokens", str(max_tokens), "--rounds", str(rounds)]
    return command + (["--json", str(json_file)] if json_file is not None else [])
