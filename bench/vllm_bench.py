"""vLLM through `modelyard serve` versus vLLM's own OpenAI server, printed as ratios from one run.

Same model, same engine settings, same client: SmolLM2-135M-Instruct (safetensors from
scripts/prepare_models.py) on vLLM, float32, eager, max_model_len 2048, a 1 GiB KV cache. For 1 and
8 concurrent chat streams: aggregate generated tokens/s and mean time to first token (TTFT). First
vLLM's server (`python -m vllm.entrypoints.openai.api_server`), then a real `modelyard serve` (HTTP +
SSE + runner process hosting vLLM's AsyncLLM and its OpenAI layer). The two never run at once.

    .venv-vllm/bin/python bench/vllm_bench.py [--tokens 64] [--rounds 2] [--model DIR]

Greedy with ignore_eos, so every stream generates exactly --tokens tokens. Needs .venv-vllm
(plugins/engine-vllm/scripts/setup-env.sh) and the prepared model.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _harness import free_port, modelyard_serve, running, stream_chat, wait_for

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (1, 8)
MAX_MODEL_LEN = 2048
KV_BYTES = 1 << 30
PROMPTS = [
    f"Tell me a long story about a {thing}."
    for thing in ("dragon", "ship", "castle", "forest", "robot", "river", "city", "comet")
]


async def measure(
    base_url: str, model: str, tokens: int, rounds: int
) -> dict[int, dict[str, float]]:
    results: dict[int, dict[str, float]] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=900) as client:
        # Warm-up: first-request costs stay out of the figures.
        await stream_chat(client, model, "Hello", 4)
        for level in LEVELS:
            ttfts: list[float] = []
            generated = 0
            start = time.perf_counter()
            for _ in range(rounds):
                answers = await asyncio.gather(
                    *(
                        stream_chat(client, model, PROMPTS[i % len(PROMPTS)], tokens)
                        for i in range(level)
                    )
                )
                ttfts.extend(a.ttft for a in answers)
                generated += sum(a.tokens for a in answers)
            elapsed = time.perf_counter() - start
            results[level] = {
                "tok_s": generated / elapsed,
                "ttft": sum(ttfts) / len(ttfts),
                "tokens": generated,
            }
    return results


def bench_vllm(
    python: str, model_dir: Path, tokens: int, rounds: int, work: Path
) -> tuple[dict[int, dict[str, float]], float]:
    port = free_port()
    argv = [
        python,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        "smol",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--kv-cache-memory-bytes",
        str(KV_BYTES),
        "--disable-log-stats",
    ]
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    with running(argv, env, work / "vllm-serve.log", grace=60) as process:
        ready = wait_for(f"http://127.0.0.1:{port}/health", process, work / "vllm-serve.log")
        return asyncio.run(measure(f"http://127.0.0.1:{port}", "smol", tokens, rounds)), ready


def bench_modelyard(
    model_dir: Path, tokens: int, rounds: int
) -> tuple[dict[int, dict[str, float]], float]:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_CPU_KVCACHE_SPACE"}
    env["MODELYARD_PLUGINS"] = "vllm"
    family = {
        "model_name": "bench-smollm2",
        "model_type": "LLM",
        "model_ability": ["chat", "generate"],
        "context_length": MAX_MODEL_LEN,
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
    with (
        modelyard_serve(env, "--log-level", "warning", grace=60) as serve,
        httpx.Client(base_url=serve.url, timeout=900) as http,
    ):
        response = http.post(
            "/v1/model_registrations/LLM", json={"model": json.dumps(family), "persist": False}
        )
        response.raise_for_status()
        start = time.monotonic()
        # The same settings vLLM's server gets above (these are also modelyard's CPU defaults).
        launch = {
            "model_name": "bench-smollm2",
            "model_engine": "vLLM",
            "model_uid": "smol",
            "dtype": "float32",
            "enforce_eager": True,
            "max_model_len": MAX_MODEL_LEN,
            "kv_cache_memory_bytes": KV_BYTES,
        }
        response = http.post("/v1/models", json=launch)
        if response.status_code != 200:
            raise SystemExit(f"launch failed: {response.text}")
        ready = time.monotonic() - start
        try:
            return asyncio.run(measure(serve.url, "smol", tokens, rounds)), ready
        finally:
            http.delete("/v1/models/smol")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per concurrency level")
    parser.add_argument("--model", type=Path, default=ROOT / ".models" / "smollm2-135m-instruct")
    args = parser.parse_args()
    if not (args.model / "config.json").is_file():
        raise SystemExit(f"{args.model} is missing: run scripts/prepare_models.py smollm2")
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as tmp:
        work = Path(tmp)
        native, native_ready = bench_vllm(python, args.model, args.tokens, args.rounds, work)
        served, served_ready = bench_modelyard(args.model, args.tokens, args.rounds)
    cpus = os.cpu_count()
    print(
        f"\nSmolLM2-135M-Instruct, vLLM CPU build, float32, eager; {platform.machine()}, {cpus} CPUs; "
        f"{args.tokens} tokens/stream, {args.rounds} rounds per level"
    )
    print(
        f"ready: vLLM server {native_ready:.0f} s (process start to /health); "
        f"modelyard launch {served_ready:.0f} s (POST /v1/models to ready)"
    )
    print(
        f"{'streams':>7} | {'vLLM tok/s':>10} | {'modelyard tok/s':>15} | {'ratio':>5} | "
        f"{'vLLM TTFT':>9} | {'modelyard TTFT':>14} | {'ratio':>5}"
    )
    for level in LEVELS:
        n, m = native[level], served[level]
        print(
            f"{level:>7} | {n['tok_s']:>10.1f} | {m['tok_s']:>15.1f} | {m['tok_s'] / n['tok_s']:>5.2f} | "
            f"{n['ttft'] * 1000:>7.0f}ms | {m['ttft'] * 1000:>12.0f}ms | {m['ttft'] / n['ttft']:>5.2f}"
        )
    print("ratio = modelyard / vLLM (tokens/s: higher is better; TTFT: lower is better)")


if __name__ == "__main__":
    main()
