"""SGLang through `modelyard serve` versus SGLang's own server, side by side with `modelyard bench`.

Same model, same engine settings, same client: SmolLM2-135M-Instruct (float32 safetensors from
scripts/prepare_models.py) on SGLang's CPU engine, context 2048, a KV pool of 4096 tokens, one
OpenMP thread bound to core 0 and passive OpenMP waiting for both. SGLang's server is `python -m
sglang.launch_server --device cpu`; modelyard's is a real `modelyard serve` (HTTP + SSE + a runner
process hosting `sglang.Engine`). Both stay up while `modelyard bench` alternates them round by
round (A B, B A, ...) at 1 and 4 concurrent streams, and prints tokens/s (median, min-max), TTFT and
CPU per token with the load average. Both schedulers sleep on their sockets when idle
(`--sleep-on-idle` for SGLang's server, the plugin's default on the CPU engine; SGLang's own default
busy-polls a core), so the other server costs nothing while one is measured.

    .venv-sglang/bin/python bench/sglang_bench.py [--tokens 32] [--requests 4] [--rounds 3]

Greedy with ignore_eos, so every request generates exactly --tokens tokens. Needs .venv-sglang
(plugins/engine-sglang/scripts/setup-env.sh, which also installs modelyard there) and the model.
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
CONTEXT = 2048
KV_TOKENS = 4096
# What both servers get: SGLang's CPU engine, one OpenMP thread on core 0.
ENGINE_ENV = {
    "SGLANG_USE_CPU_ENGINE": "1",
    "SGLANG_CPU_OMP_THREADS_BIND": "0",
    **SAME_OPENMP_WAITING,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    models = Path(os.environ.get("MODELYARD_TEST_MODELS") or ROOT / ".models")
    parser.add_argument("--model", type=Path, default=models / "smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    env = {**os.environ, **ENGINE_ENV}
    port = free_port()
    native_argv = [
        sys.executable, "-m", "sglang.launch_server", "--model-path", str(args.model),
        "--served-model-name", "smol", "--device", "cpu", "--dtype", "float32",
        "--context-length", str(CONTEXT), "--max-total-tokens", str(KV_TOKENS),
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--sleep-on-idle",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="sglang-bench-") as tmp:
        log = Path(tmp) / "sglang.log"
        with running(native_argv, env, log) as native:
            native_url = f"http://127.0.0.1:{port}"
            ready = wait_for(f"{native_url}/health", native, log)
            print(f"SGLang's server ready in {ready:.0f} s", flush=True)
            roots = ("--model-root", str(args.model.parent))
            with modelyard_serve(env, *roots) as served:
                uid = register_and_launch(
                    served.url,
                    smollm2_family(args.model, CONTEXT),
                    model_engine="SGLang",
                    model_uid="smol",
                    context_length=CONTEXT,
                    max_total_tokens=KV_TOKENS,
                )
                print(f"modelyard serve → SGLang ready (model {uid})", flush=True)
                bench = bench_command(
                    [(native_url, "smol"), (served.url, uid)],
                    concurrency="1,4",
                    requests=args.requests,
                    max_tokens=args.tokens,
                    rounds=args.rounds,
                    json_file=args.json,
                )
                subprocess.run(bench, env=env, check=True)


if __name__ == "__main__":
    main()
