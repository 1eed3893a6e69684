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
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    def __init__(self, threads: int) -> None:
        exe = Path(sys.executable).with_name("modelyard")
        if not exe.exists():
            raise SystemExit("the `modelyard` command is not installed beside this python")
        self.home = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
        self.url = f"http://127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "MODELYARD_HOME": str(self.home),
            "MODELYARD_TORCH_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
        }
        self.log = (self.home / "serve.log").open("wb")
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [str(exe), "serve", "--host", "127.0.0.1", "--port", port],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        for _ in range(600):
            try:
                if httpx.get(f"{self.url}/status", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise SystemExit("modelyard serve did not start; see " + str(self.home / "serve.log"))

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

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


async def stream_tokens(http: httpx.AsyncClient, uid: str, prompt: str, tokens: int) -> int:
    body = {
        "model": uid,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    used = 0
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    used = usage["completion_tokens"]
    return used


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
        await stream_tokens(http, uid, "warm up", 4)
        start = time.perf_counter()
        single = await stream_tokens(http, uid, PROMPTS[0], tokens)
        one = single / (time.perf_counter() - start)
        start = time.perf_counter()
        counts = await asyncio.gather(*(stream_tokens(http, uid, p, tokens) for p in PROMPTS))
        four = sum(counts) / (time.perf_counter() - start)
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
    server = Server(args.threads)
    try:
        one, four = asyncio.run(llm_bench(server, args.tokens))
        concurrent, sequential = asyncio.run(embed_bench(server))
    finally:
        server.close()
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
