"""MLX through `modelyard serve` versus mlx-lm's own server (`mlx_lm.server`), side by side.

Same model, same settings: SmolLM2-135M-Instruct (the float32 folder scripts/prepare_models.py
builds, or --model DIR), greedy, 8 sequences per decode batch, one OpenBLAS thread for both (the
modelyard runner preloads OpenBLAS itself; mlx_lm.server gets it through LD_PRELOAD). Both servers
run at once and `modelyard bench` (modelyard.benchmark) alternates them round by round at 1 and 4
concurrent streams, reporting medians, min-max, TTFT and the load average.

    .venv-mlx/bin/python bench/mlx_bench.py [--tokens 64] [--rounds 3] [--requests 8] [--model DIR]

Needs .venv-mlx (plugins/engine-mlx/scripts/setup-env.sh). mlx_lm.server ignores ignore_eos, so a
stream that ends early counts the tokens it made (tokens/s stays comparable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import httpx
import msgspec
from _harness import free_port, modelyard_serve, running, wait_for
from modelyard import benchmark
from modelyard_mlx.openblas import find_openblas

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 4)
BATCH = 8


def _family(model_dir: Path) -> dict[str, object]:
    return {
        "model_name": "bench-smollm2-mlx",
        "model_type": "LLM",
        "model_ability": ["chat", "generate"],
        "context_length": 2048,
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.135,
                "quantizations": ["none"],
                "sources": [{"hub": "local", "model_id": str(model_dir)}],
            }
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    models = Path(os.environ.get("MODELYARD_TEST_MODELS") or ROOT / ".models")
    parser.add_argument("--model", type=Path, default=models / "smollm2-135m-instruct")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the full report here")
    args = parser.parse_args()
    model_dir = args.model.resolve()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "MODELYARD_MLX_THREADS": "1"}
    mlx_env = dict(env)
    if (blas := find_openblas()) is not None:
        mlx_env["LD_PRELOAD"] = blas
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="mlx-bench-") as tmp:
        work = Path(tmp)
        (work / "hf").mkdir()  # mlx_lm.server's /v1/models lists this cache; it must exist
        mlx_env["HF_HUB_CACHE"] = str(work / "hf")
        argv = [
            sys.executable, "-m", "mlx_lm.server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(port), "--temp", "0",
            "--decode-concurrency", str(BATCH), "--prompt-concurrency", str(BATCH),
        ]  # fmt: skip
        log = work / "mlx_lm-server.log"
        with (
            running(argv, mlx_env, log) as process,
            modelyard_serve(
                {**env, "MODELYARD_PLUGINS": "mlx"}, "--model-root", str(model_dir.parent)
            ) as serve,
            httpx.Client(base_url=serve.url, timeout=900) as http,
        ):
            wait_for(f"http://127.0.0.1:{port}/v1/models", process, log)
            family = json.dumps(_family(model_dir))
            http.post(
                "/v1/model_registrations/LLM", json={"model": family, "persist": False}
            ).raise_for_status()
            launch = {
                "model_name": "bench-smollm2-mlx",
                "model_engine": "MLX",
                "model_uid": "smol",
                "max_num_seqs": BATCH,
                "prefill_batch_size": BATCH,
            }
            response = http.post("/v1/models", json=launch)
            if response.status_code != 200:
                raise SystemExit(f"launch failed: {response.text}")
            targets = [
                benchmark.Target(serve.url, "smol"),
                benchmark.Target(f"http://127.0.0.1:{port}", str(model_dir)),
            ]
            report = benchmark.run(
                targets, LEVELS, args.requests, args.tokens, args.rounds, progress=print
            )
    for level in report.levels:
        print(msgspec.json.encode(level).decode())
    if args.json:
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2))


if __name__ == "__main__":
    main()
