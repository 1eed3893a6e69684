"""Throughput of the transformers plugin through a real `modelyard serve`, printed as ratios.

LLM: aggregate completion tokens/s with 4 concurrent streams versus 1 (SmolLM2-135M-Instruct).
Embeddings: 64 concurrent single-sentence requests versus the same 64 sent one at a time, versus
sentence-transformers called directly, in this process, with one batch of 64 (all-MiniLM-L6-v2).

Needs the test models (python scripts/prepare_models.py) and an environment with modelyard and
the plugin installed. Engines use one torch thread (MODELYARD_TORCH_THREADS, default 1 here) so
that runs on small shared machines are comparable.

    python bench/transformers_bench.py [--tokens 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import modelyard_serve, stream_chat

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


async def llm_bench(server: Server, tokens: int) -> tuple[float, float]:
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
    async with httpx.AsyncClient(base_url=server.url, timeout=600) as http:
        await stream_chat(http, uid, "warm up", 4)
        start = time.perf_counter()
        single = await stream_chat(http, uid, PROMPTS[0], tokens)
        one = single.tokens / (time.perf_counter() - start)
        start = time.perf_counter()
        answers = await asyncio.gather(*(stream_chat(http, uid, p, tokens) for p in PROMPTS))
        four = sum(a.tokens for a in answers) / (time.perf_counter() - start)
        await http.delete(f"/v1/models/{uid}")
    return one, four


async def embed_bench(server: Server) -> tuple[float, float]:
    uid = server.launch(
        family("bench-minilm", "embedding", "all-minilm-l6-v2", dimensions=384, max_tokens=256),
        model_engine="sentence_transformers",
        model_uid="bench-emb",
    )
    async with httpx.AsyncClient(
        base_url=server.url, timeout=600, limits=httpx.Limits(max_connections=100)
    ) as http:

        async def one(text: str) -> None:
            r = await http.post("/v1/embeddings", json={"model": uid, "input": text})
            r.raise_for_status()

        await one("warm up")
        start = time.perf_counter()
        await asyncio.gather(*(one(s) for s in SENTENCES))
        concurrent = time.perf_counter() - start
        start = time.perf_counter()
        for s in SENTENCES:
            await one(s)
        sequential = time.perf_counter() - start
        await http.delete(f"/v1/models/{uid}")
    return concurrent, sequential


def direct_embed(threads: int) -> float:
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    model = SentenceTransformer(
        str(MODELS / "all-minilm-l6-v2"), device="cpu", local_files_only=True
    )
    model.encode(["warm up"], show_progress_bar=False)
    start = time.perf_counter()
    model.encode(SENTENCES, batch_size=len(SENTENCES), show_progress_bar=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per stream")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the engines")
    args = parser.parse_args()
    for folder in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        if not (MODELS / folder).is_dir():
            raise SystemExit(f"{MODELS / folder} is missing: run python scripts/prepare_models.py")
    threads = {"MODELYARD_TORCH_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    with modelyard_serve({**os.environ, **threads}, timeout=60, interval=0.1) as serve:
        server = Server(serve.url)
        one, four = asyncio.run(llm_bench(server, args.tokens))
        concurrent, sequential = asyncio.run(embed_bench(server))
    direct = direct_embed(args.threads)
    n = len(SENTENCES)
    print(
        f"machine: {os.cpu_count()} CPUs, {args.threads} torch thread(s); SmolLM2-135M-Instruct, all-MiniLM-L6-v2"
    )
    print(f"chat, 1 stream:   {one:7.1f} tokens/s")
    print(f"chat, 4 streams:  {four:7.1f} tokens/s aggregate   ratio 4/1 = {four / one:.2f}x")
    print(f"embeddings, {n} concurrent single-sentence requests: {n / concurrent:7.1f} sentences/s")
    print(
        f"embeddings, {n} requests one at a time:               {n / sequential:7.1f} sentences/s"
        f"   concurrent/sequential = {sequential / concurrent:.2f}x"
    )
    print(
        f"embeddings, sentence-transformers direct, one batch:  {n / direct:7.1f} sentences/s"
        f"   server-concurrent/direct = {direct / concurrent:.2f}x"
    )


if __name__ == "__main__":
    main()
