"""vLLM through `modelyard serve` versus vLLM's own OpenAI server, side by side with `modelyard bench`.

Same model, same engine settings, same client: SmolLM2-135M-Instruct (float32 safetensors from
scripts/prepare_models.py) on vLLM's CPU build, float32, eager, max_model_len 2048, a 1 GiB KV
cache, passive OpenMP waiting. vLLM's server is `python -m vllm.entrypoints.openai.api_server`;
modelyard's is a real `modelyard serve` (HTTP + SSE + a runner process hosting vLLM's AsyncLLM).
Both stay up while `modelyard bench` alternates them round by round (A B, B A, ...) at 1 and 8
concurrent streams, and prints tokens/s (median, min-max), TTFT p50/p95 and CPU per token with the
load average before each run; idle, a vLLM engine waits on its socket, so the other server costs
little while one is measured.

    .venv-vllm/bin/python bench/vllm_bench.py [--tokens 64] [--requests 8] [--rounds 3]
        [--concurrency 1,8] [--json FILE]

Greedy with ignore_eos, so every request generates exactly --tokens tokens. Needs .venv-vllm
(bash plugins/engine-vllm/scripts/setup-env.sh, which installs modelyard there too) and the model.
On a shared 2-core machine a short run (--requests 2 --rounds 1) checks that it works.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import (
    SAME_OPENMP_WAITING,
    bench_command,
    free_port,
    modelyard_serve,
    register_and_launch,
    running,
    smollm2_family,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
MAX_MODEL_LEN = 2048
KV_BYTES = 1 << 30
# The same settings for both servers (these are also modelyard's CPU defaults for vLLM).
SETTINGS = {"dtype": "float32", "enforce_eager": True, "max_model_len": MAX_MODEL_LEN}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    models = Path(os.environ.get("MODELYARD_TEST_MODELS") or ROOT / ".models")
    parser.add_argument("--model", type=Path, default=models / "smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per request")
    parser.add_argument("--requests", type=int, default=8, help="requests per level and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is missing: run scripts/prepare_models.py")
    # modelyard sizes vLLM's KV cache itself (kv_cache_memory_bytes); vLLM's own variable would
    # override the native server's.
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    env |= SAME_OPENMP_WAITING
    port = free_port()
    native_argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(args.model), "--served-model-name", "smol",
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", SETTINGS["dtype"], "--enforce-eager", "--max-model-len", str(MAX_MODEL_LEN),
        "--kv-cache-memory-bytes", str(KV_BYTES), "--disable-log-stats",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        log = Path(tmp) / "vllm-serve.log"
        with running(native_argv, env, log, grace=60) as native:
            native_url = f"http://127.0.0.1:{port}"
            ready = wait_for(f"{native_url}/health", native, log)
            print(f"vLLM's server ready in {ready:.0f} s", flush=True)
            served_env = {**env, "MODELYARD_PLUGINS": "vllm"}
            roots = ("--model-root", str(args.model.parent), "--log-level", "warning")
            with modelyard_serve(served_env, *roots, grace=60) as served:
                uid = register_and_launch(
                    served.url,
                    smollm2_family(args.model, MAX_MODEL_LEN),
                    model_engine="vLLM",
                    model_uid="smol",
                    kv_cache_memory_bytes=KV_BYTES,
                    **SETTINGS,
                )
                print(f"modelyard serve → vLLM ready (model {uid})", flush=True)
                bench = bench_command(
                    [(native_url, "smol"), (served.url, uid)],
                    concurrency=args.concurrency,
                    requests=args.requests,
                    max_tokens=args.tokens,
                    rounds=args.rounds,
                    json_file=args.json,
                )
                print("A = vLLM's own server; B = modelyard serve → vLLM", flush=True)
                sys.exit(subprocess.run(bench, env=env, check=False).returncode)


if __name__ == "__main__":
    main()
