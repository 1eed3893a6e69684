"""What the cluster costs a request: a supervisor whose runner is on another Ray node, against the
embedded default, side by side in one run (alternated round by round), through `modelyard bench`.

A Ray cluster of a head and one worker node on 127.0.0.1 (ray.cluster_utils, stopped at the end);
`modelyard serve --cluster` places SmolLM2-135M (Q4_1 GGUF, llama.cpp, 1 thread, 4 slots) on the
worker node, so every frame crosses the runner host actor; a plain `modelyard serve` runs the same
launch as its own subprocess. Prints the added time to first token and the tokens/s ratio.

    python bench/cluster_bench.py [--concurrency 1,4] [--requests 8] [--max-tokens 64] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys

import httpx

for name, value in {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every node on 127.0.0.1 (ENGINES.md)
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():
    os.environ.setdefault(name, value)

from _harness import modelyard_serve  # noqa: E402
from modelyard.benchmark import Target, run  # noqa: E402

LAUNCH = {
    "model_name": "smollm2-instruct",
    "model_format": "ggufv2",
    "quantization": "Q4_1",
    "model_uid": "smol",
    "n_threads": 1,
    "n_parallel": 4,
    "n_ctx": 4096,
}


def launch(url: str, **extra: object) -> None:
    made = httpx.post(f"{url}/v1/models", json={**LAUNCH, **extra}, timeout=600)
    if made.status_code != 200:
        raise SystemExit(f"launch at {url} failed: {made.text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "resources": {"head_node": 1}, "include_dashboard": False},
    )
    try:
        cluster.add_node(num_cpus=1, resources={"node_b": 1})
        cluster.wait_for_nodes()
        env = {**os.environ, "MODELYARD_LLAMACPP_THREADS": "1", "OMP_NUM_THREADS": "1"}
        with (
            modelyard_serve(env, "--cluster", cluster.address) as sup,
            modelyard_serve(env) as emb,
        ):
            launch(sup.url, node_resources={"node_b": 0.5})
            launch(emb.url)
            report = run(
                [Target(sup.url, "smol"), Target(emb.url, "smol")],
                [int(level) for level in args.concurrency.split(",")],
                args.requests,
                args.max_tokens,
                args.rounds,
                progress=lambda line: print(line, file=sys.stderr),
            )
    finally:
        cluster.shutdown()

    print(f"{report.date}, {report.machine}, Python {sys.version.split()[0]}")
    print(f"{args.requests} requests x {args.max_tokens} tokens per level, {args.rounds} rounds")
    print(f"{'streams':>7} {'via Ray node tok/s':>19} {'embedded tok/s':>15} {'ratio':>6} "
          f"{'TTFT p50 added':>15} {'load avg':>9}")  # fmt: skip
    by = {(level.target, level.concurrency): level for level in report.levels}
    for level in sorted({lv.concurrency for lv in report.levels}):
        remote, local = by[(0, level)], by[(1, level)]
        added_ms = (remote.ttft_p50 - local.ttft_p50) * 1000
        loads = remote.load_averages + local.load_averages
        print(
            f"{level:>7} {remote.tokens_per_second:>8.1f} ({remote.tokens_per_second_min:.0f}-"
            f"{remote.tokens_per_second_max:.0f}) {local.tokens_per_second:>8.1f} "
            f"({local.tokens_per_second_min:.0f}-{local.tokens_per_second_max:.0f}) "
            f"{remote.tokens_per_second / local.tokens_per_second:>6.2f} {added_ms:>12.1f} ms "
            f"{min(loads):.1f}-{max(loads):.1f}"
        )


if __name__ == "__main__":
    main()
