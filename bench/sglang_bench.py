"""SGLang through `modelyard serve` versus SGLang's own server, side by side with `modelyard bench`.

Same model, same engine settings, same client: SmolLM2-135M-Instruct (float32 safetensors from
scripts/prepare_models.py) on SGLang's CPU engine, context 2048, a KV pool of 4096 tokens, one
OpenMP thread bound to core 0 for both. SGLang's server is `python -m sglang.launch_server --device
cpu`; modelyard's is a real `modelyard serve` (HTTP + SSE + a runner process hosting
`sglang.Engine`). Both stay up while `modelyard bench` alternates them round by round (A B, B A,
...) at 1 and 4 concurrent streams, and prints tokens/s (median, min-max), TTFT and CPU per token
with the load average. Both schedulers sleep on their sockets when idle (`--sleep-on-idle`, the
plugin's CPU default; SGLang's own default busy-polls a core), so the other server costs nothing
while one is measured.

    .venv-sglang/bin/python bench/sglang_bench.py [--tokens 32] [--requests 4] [--rounds 3]

Greedy with ignore_eos, so every request generates exactly --tokens tokens. Needs .venv-sglang
(plugins/engine-sglang/scripts/setup-env.sh, which also installs modelyard there) and the model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
from _harness import free_port, modelyard_serve, running, wait_for

ROOT = Path(__file__).resolve().parents[1]
CONTEXT = 2048
KV_TOKENS = 4096
# What both servers get: SGLang's CPU engine, one OpenMP thread on core 0.
ENGINE_ENV = {"SGLANG_USE_CPU_ENGINE": "1", "SGLANG_CPU_OMP_THREADS_BIND": "0"}


def family(model_dir: Path) -> dict[str, object]:
    return {
        "model_name": "bench-smollm2",
        "model_type": "LLM",
        "model_ability": ["chat", "generate"],
        "context_length": CONTEXT,
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


def launch_on_modelyard(url: str, model_dir: Path) -> str:
    with httpx.Client(base_url=url, timeout=900) as http:
        registered = http.post(
            "/v1/model_registrations/LLM",
            json={"model": json.dumps(family(model_dir)), "persist": False},
        )
        registered.raise_for_status()
        launched = http.post(
            "/v1/models",
            json={
                "model_name": "bench-smollm2",
                "model_engine": "SGLang",
                "model_uid": "smol",
                "context_length": CONTEXT,
                "max_total_tokens": KV_TOKENS,
            },
        )
        if launched.status_code != 200:
            raise SystemExit(f"launch failed: {launched.text}")
        return str(launched.json()["model_uid"])


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
                uid = launch_on_modelyard(served.url, args.model)
                print(f"modelyard serve → SGLang ready (model {uid})", flush=True)
                bench = [
                    str(Path(sys.executable).with_name("modelyard")), "bench",
                    "--url", native_url, "--model", "smol",
                    "--url", served.url, "--model", uid,
                    "--concurrency", "1,4", "--requests", str(args.requests),
                    "--max-tokens", str(args.tokens), "--rounds", str(args.rounds),
                ]  # fmt: skip
                if args.json is not None:
                    bench += ["--json", str(args.json)]
                subprocess.run(bench, env=env, check=True)


if __name__ == "__main__":
    main()
