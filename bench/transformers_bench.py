"""The transformers plugin through a real `modelyard serve`, figures anyone can rerun.

Chat: SmolLM2-135M-Instruct at 1 and 4 concurrent streams through `modelyard bench` (tok/s median
and min-max over rounds, TTFT, the server's CPU per token, load average). Embeddings: 64 concurrent
single-sentence requests to all-MiniLM-L6-v2 against sentence-transformers called directly in this
process with one batch of 64, alternated round by round (direct, served; then served, direct ...),
each with the load average before it. Engines and the direct run keep their defaults (torch's own
thread count for the direct run, the plugin's for the server) unless --threads pins both.

    python bench/transformers_bench.py [--tokens 64] [--rounds 3] [--threads N]

Needs the test models (python scripts/prepare_models.py) and modelyard with the plugin installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import modelyard_serve

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS") or ROOT / ".models")
SENTENCES = [
    f"Sentence {i}: the quick brown fox number {i} jumps over {i % 7} lazy dogs." for i in range(64)
]
PROMPTS = [
    "Write a story about a dragon.",
    "Explain how rain forms.",
    "Describe Paris.",
    "List some fruits.",
]


def family(name: str, model_type: str, folder: str, **extra: Any) -> dict[str, Any]:
    return {
        "model_name": name,
        "model_type": model_type,
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.135 if model_type == "LLM" else 0.022,
                "quantizations": ["none"],
                "sources": [{"hub": "local", "model_id": str(MODELS / folder)}],
            }
        ],
        **extra,
    }


class Server:
    def __init__(self, url: str) -> None:
        self.url = url

    def launch(self, fam: dict[str, Any], **payload: Any) -> str:
        with httpx.Client(base_url=self.url, timeout=600) as http:
            r = http.post(
                f"/v1/model_registrations/{fam['model_type']}",
                json={"model": json.dumps(fam), "persist": False},
            )
            r.raise_for_status()
            r = http.post(
                "/v1/models",
                json={"model_name": fam["model_name"], "model_type": fam["model_type"], **payload},
            )
            if r.status_code != 200:
                raise SystemExit(f"launch failed: {r.text}")
            return r.json()["model_uid"]


def llm_bench(server: Server, tokens: int, rounds: int) -> int:
    uid = server.launch(
        family(
            "bench-smollm2",
            "LLM",
            "smollm2-135m-instruct",
            model_ability=["chat", "generate"],
            context_length=2048,
        ),
        model_engine="Transformers",
        model_uid="bench-llm",
    )
    command = [
        str(Path(sys.executable).with_name("modelyard")),
        "bench",
        "--url", server.url, "--model", uid,
        "--concurrency", "1,4",
        "--requests", "8",
        "--max-tokens", str(tokens),
        "--rounds", str(rounds),
    ]  # fmt: skip
    code = subprocess.run(command, check=False).returncode
    httpx.delete(f"{server.url}/v1/models/{uid}", timeout=60)
    return code


async def served_embed(url: str, uid: str) -> float:
    """Sentences per second for 64 concurrent single-sentence requests."""
    async with httpx.AsyncClient(
        base_url=url, timeout=600, limits=httpx.Limits(max_connections=100)
    ) as http:

        async def one(text: str) -> None:
            r = await http.post("/v1/embeddings", json={"model": uid, "input": text})
            r.raise_for_status()

        await one("warm up")
        start = time.perf_counter()
        await asyncio.gather(*(one(s) for s in SENTENCES))
        return len(SENTENCES) / (time.perf_counter() - start)


def embed_bench(server: Server, threads: int | None, rounds: int) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    if threads is not None:
        torch.set_num_threads(threads)
    uid = server.launch(
        family("bench-minilm", "embedding", "all-minilm-l6-v2", dimensions=384, max_tokens=256),
        model_engine="sentence_transformers",
        model_uid="bench-emb",
    )
    model = SentenceTransformer(
        str(MODELS / "all-minilm-l6-v2"), device="cpu", local_files_only=True
    )
    model.encode(["warm up"], show_progress_bar=False)

    def direct() -> float:
        start = time.perf_counter()
        model.encode(SENTENCES, batch_size=len(SENTENCES), show_progress_bar=False)
        return len(SENTENCES) / (time.perf_counter() - start)

    figures: dict[str, list[float]] = {"direct": [], "served": []}
    loads: list[float] = []
    for round_no in range(rounds):
        for name in ("direct", "served") if round_no % 2 == 0 else ("served", "direct"):
            loads.append(os.getloadavg()[0])
            rate = direct() if name == "direct" else asyncio.run(served_embed(server.url, uid))
            figures[name].append(rate)
    httpx.delete(f"{server.url}/v1/models/{uid}", timeout=60)
    print(
        f"embeddings, {len(SENTENCES)} concurrent single-sentence requests, {rounds} rounds "
        f"alternated (torch threads in the direct run: {torch.get_num_threads()}; "
        f"load average {min(loads):.1f}-{max(loads):.1f}):"
    )
    for name, rates in figures.items():
        print(
            f"  {name:7s} {statistics.median(rates):6.1f} sentences/s ({min(rates):.1f}-{max(rates):.1f})"
        )
    ratio = statistics.median(figures["served"]) / statistics.median(figures["direct"])
    print(f"  served / direct = {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="torch threads everywhere (default: each one's own)"
    )
    args = parser.parse_args()
    for folder in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        if not (MODELS / folder).is_dir():
            raise SystemExit(f"{MODELS / folder} is missing: run python scripts/prepare_models.py")
    env = dict(os.environ)
    if args.threads is not None:
        env |= {"MODELYARD_TORCH_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    with modelyard_serve(env, "--model-root", str(MODELS), timeout=60, interval=0.1) as serve:
        server = Server(serve.url)
        code = llm_bench(server, args.tokens, args.rounds)
        embed_bench(server, args.threads, args.rounds)
    sys.exit(code)


if __name__ == "__main__":
    main()
