"""The transformers plugin through a real `modelyard serve`, figures anyone can rerun.

Chat: SmolLM2-135M-Instruct at 1 and 4 concurrent streams through `modelyard bench` (tok/s median
and min-max over rounds, TTFT, the server's CPU per token, load average). Embeddings: 64 concurrent
single-sentence requests to all-MiniLM-L6-v2 against sentence-transformers called directly in this
process with one batch of 64, alternated round by round (direct, served; then served, direct ...),
each with the load average before it; served / direct is printed as the ratio of the medians and
as the median of each round's own ratio. Engines and the direct run keep their defaults (torch's
own thread count for the direct run, the plugin's for the server) unless --threads pins both.

The embedding client is a small HTTP/1.1 client on asyncio streams, one keep-alive connection per
concurrent request, opened before the clock starts (as the direct run's model is loaded before
its clock starts): httpx spends ~3 ms of CPU per request here, and on a 2-core machine that CPU is
taken from the server being measured (``--client httpx`` measures with it anyway). Each round
prints the CPU (utime + stime) that the server's process tree, the client and the direct run spent.

    python bench/transformers_bench.py [--tokens 64] [--rounds 3] [--threads N]
        [--part chat,embeddings] [--client lean|httpx]

Needs the test models (python scripts/prepare_models.py) and modelyard with the plugin installed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvloop
from _harness import bench_command, modelyard_serve, register_and_launch
from modelyard.benchmark import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS") or ROOT / ".models")
SETTLE_S = 0.1  # idle time before each timed run
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
        return register_and_launch(self.url, fam, model_type=fam["model_type"], **payload)


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
    command = bench_command(
        [(server.url, uid)], concurrency="1,4", requests=8, max_tokens=tokens, rounds=rounds
    )
    code = subprocess.run(command, check=False).returncode
    httpx.delete(f"{server.url}/v1/models/{uid}", timeout=60)
    return code


class LeanClient:
    """POSTs JSON over kept-alive HTTP/1.1 connections, one per concurrent request."""

    def __init__(self, url: str, connections: int) -> None:
        self.host, port = url.removeprefix("http://").split(":")
        self.port, self.connections = int(port), connections
        self._streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> LeanClient:
        self._streams = [
            await asyncio.open_connection(self.host, self.port) for _ in range(self.connections)
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for _, writer in self._streams:
            writer.close()

    async def post(self, index: int, path: str, body: dict[str, Any]) -> Any:
        reader, writer = self._streams[index]
        data = json.dumps(body).encode()
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in head[1:] if ": " in line)
        reply = await reader.readexactly(int(fields["content-length"]))
        if not head[0].startswith("HTTP/1.1 200"):
            raise SystemExit(f"{path}: {head[0]}: {reply.decode()[:500]}")
        return msgspec.json.decode(reply)  # json.loads: ~150 us for 384 floats, this ~18 us


async def served_embed(url: str, uid: str, client: str) -> float:
    """Sentences per second for 64 concurrent single-sentence requests (each reply checked)."""

    def check(reply: Any) -> None:
        if len(reply["data"][0]["embedding"]) != 384:
            raise SystemExit(f"unexpected reply: {str(reply)[:300]}")

    if client == "httpx":
        async with httpx.AsyncClient(
            base_url=url, timeout=600, limits=httpx.Limits(max_connections=100)
        ) as http:

            async def one(index: int, text: str) -> None:
                r = await http.post("/v1/embeddings", json={"model": uid, "input": text})
                r.raise_for_status()
                check(r.json())

            await one(0, "warm up")
            start = time.perf_counter()
            await asyncio.gather(*(one(i, s) for i, s in enumerate(SENTENCES)))
            return len(SENTENCES) / (time.perf_counter() - start)
    async with LeanClient(url, len(SENTENCES)) as lean:

        async def post(index: int, text: str) -> None:
            check(await lean.post(index, "/v1/embeddings", {"model": uid, "input": text}))

        await post(0, "warm up")
        start = time.perf_counter()
        await asyncio.gather(*(post(i, s) for i, s in enumerate(SENTENCES)))
        return len(SENTENCES) / (time.perf_counter() - start)


def served_run(burst: Coroutine[Any, Any, float]) -> float:
    # uvloop, as the server has: the client shares the two cores with what it measures (its CPU
    # per burst here: ~16 ms on uvloop, ~22 ms on asyncio's own loop).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(burst)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def embed_bench(server: Server, pid: int, threads: int | None, rounds: int, client: str) -> None:
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
    # This process is also the served runs' client: parsing replies triggers collections, and a
    # full one walks torch's heap (~300 ms) in whichever run it lands. The server freezes its heap
    # the same way (runner and serve process).
    gc.freeze()

    def direct() -> float:
        start = time.perf_counter()
        model.encode(SENTENCES, batch_size=len(SENTENCES), show_progress_bar=False)
        return len(SENTENCES) / (time.perf_counter() - start)

    figures: dict[str, list[float]] = {"direct": [], "served": []}
    loads: list[float] = []
    for round_no in range(rounds):
        for name in ("direct", "served") if round_no % 2 == 0 else ("served", "direct"):
            # torch's OpenMP threads spin ~10 ms after an encode (GNU OpenMP's default): let the
            # last run's leftovers finish before this one starts.
            time.sleep(SETTLE_S)
            load = os.getloadavg()[0]
            loads.append(load)
            tree, mine = cpu_seconds(pid)[0], own_cpu()
            rate = (
                direct() if name == "direct" else served_run(served_embed(server.url, uid, client))
            )
            tree, mine = cpu_seconds(pid)[0] - tree, own_cpu() - mine
            figures[name].append(rate)
            cpu = f"server tree {tree * 1000:.0f} ms, " if name == "served" else ""
            print(
                f"  round {round_no + 1} {name:6s} {rate:6.1f} sentences/s  CPU: {cpu}"
                f"this process {mine * 1000:.0f} ms  (load {load:.1f})",
                flush=True,
            )
    httpx.delete(f"{server.url}/v1/models/{uid}", timeout=60)
    print(
        f"embeddings, {len(SENTENCES)} concurrent single-sentence requests ({client} client), "
        f"{rounds} rounds alternated (torch threads in the direct run: {torch.get_num_threads()}; "
        f"load average {min(loads):.1f}-{max(loads):.1f}):"
    )
    for name, rates in figures.items():
        print(
            f"  {name:7s} {statistics.median(rates):6.1f} sentences/s ({min(rates):.1f}-{max(rates):.1f})"
        )
    ratio = statistics.median(figures["served"]) / statistics.median(figures["direct"])
    # The two runs of a round follow each other within a second, so they share the host's speed
    # of the moment, which drifts by a third over minutes on a shared VM: per-round ratios
    # cancel that drift, the ratio of medians does not.
    paired = [s / d for s, d in zip(figures["served"], figures["direct"], strict=True)]
    print(
        f"  served / direct = {ratio:.2f} (ratio of the medians); round by round "
        f"{statistics.median(paired):.2f} ({min(paired):.2f}-{max(paired):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="torch threads everywhere (default: each one's own)"
    )
    parser.add_argument(
        "--part",
        default="chat,embeddings",
        help="what to run, comma-separated: chat, embeddings (default: both)",
    )
    parser.add_argument("--client", choices=("lean", "httpx"), default="lean")
    args = parser.parse_args()
    parts = set(args.part.split(","))
    if not parts or parts - {"chat", "embeddings"}:
        parser.error(f"--part takes chat and/or embeddings, not {args.part!r}")
    for folder in ("smollm2-135m-instruct", "all-minilm-l6-v2"):
        if not (MODELS / folder).is_dir():
            raise SystemExit(f"{MODELS / folder} is missing: run python scripts/prepare_models.py")
    env = dict(os.environ)
    if args.threads is not None:
        env |= {"MODELYARD_TORCH_THREADS": str(args.threads), "OMP_NUM_THREADS": str(args.threads)}
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M')}"
    )
    # No warm runner: its imports (seconds of CPU) would land in the first rounds.
    with modelyard_serve(
        env, "--model-root", str(MODELS), "--no-warm-runners", timeout=60, interval=0.1
    ) as serve:
        server = Server(serve.url)
        code = llm_bench(server, args.tokens, args.rounds) if "chat" in parts else 0
        if "embeddings" in parts:
            embed_bench(server, serve.process.pid, args.threads, args.rounds, args.client)
    sys.exit(code)


if __name__ == "__main__":
    main()
