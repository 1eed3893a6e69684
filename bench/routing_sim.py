"""Simulate routing many replicas: how much prompt each policy finds cached, latency, router cost.

A discrete-event simulation of multi-turn chat sessions (each resends its whole conversation behind
one of a few shared system prompts) arriving at N replicas of one model. Each replica has
``--parallel`` slots and an LRU prefix cache of ``--cache-blocks`` blocks; a request costs
``prefill`` per uncached prompt character plus ``decode`` per output token. Three policies route
the same workload: random, least loaded, and modelyard's ReplicaRouter (least loaded, preferring
the replica that holds the prompt's longest prefix). The router's own decision time is measured
for real; everything else is simulated time.

    python bench/routing_sim.py [--replicas 4,32,256] [--prefill-ms 0.25] [--decode-ms 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import heapq
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from modelyard.runner.routing import BLOCK_CHARS, ReplicaRouter, prefix_keys

CHARS_PER_TOKEN = 4
WORDS = [
    "the",
    "a",
    "model",
    "token",
    "cache",
    "prefix",
    "replica",
    "cluster",
    "answer",
    "question",
    "river",
    "city",
]


@dataclass
class Replica:
    slots: int
    cache_blocks: int
    busy: int = 0
    queue: collections.deque[Request] = field(default_factory=collections.deque)
    cache: collections.OrderedDict[int, None] = field(default_factory=collections.OrderedDict)

    def cached_chars(self, keys: list[int]) -> int:
        hit = 0
        for i, key in enumerate(keys):
            if key not in self.cache:
                break
            hit = (i + 1) * BLOCK_CHARS
        return hit

    def store(self, keys: list[int]) -> None:
        for key in keys:
            self.cache[key] = None
            self.cache.move_to_end(key)
        while len(self.cache) > self.cache_blocks:
            self.cache.popitem(last=False)


@dataclass
class Request:
    session: int
    prompt: str
    output_tokens: int
    arrived: float
    keys: list[int] = field(default_factory=list)


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + ". "


def workload(rng: random.Random, sessions: int, rate: float) -> list[tuple[float, int, int]]:
    """(arrival time of the first turn, session, turns) per session."""
    clock, out = 0.0, []
    for session in range(sessions):
        clock += rng.expovariate(rate)
        out.append((clock, session, rng.randint(2, 8)))
    return out


def simulate(policy: str, replicas: int, args: argparse.Namespace) -> dict[str, float]:
    rng = random.Random(args.seed)  # the same workload for every policy
    systems = [sentence(rng, 40) * 6 for _ in range(args.system_prompts)]
    pool = {f"r{i}": Replica(args.parallel, args.cache_blocks) for i in range(replicas)}
    router = ReplicaRouter()
    choose: Callable[[Request], str]
    if policy == "random":
        choose = lambda req: rng.choice(list(pool))  # noqa: E731
    elif policy == "least-loaded":
        choose = lambda req: router.choose(  # noqa: E731
            {n: r.busy + len(r.queue) for n, r in pool.items()}
        )
    else:
        choose = lambda req: router.choose(  # noqa: E731
            {n: r.busy + len(r.queue) for n, r in pool.items()}, req.prompt
        )

    events: list[tuple[float, int, str, object]] = []
    seq = 0

    def push(at: float, kind: str, payload: object) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, payload))

    rate = replicas * args.parallel / args.seconds_per_session_turn
    conversations: dict[int, tuple[str, int]] = {}
    for at, session, turns in workload(rng, replicas * args.sessions_per_replica, rate / 4):
        conversations[session] = (
            systems[min(int(rng.paretovariate(1.2)) - 1, len(systems) - 1)],
            turns,
        )
        push(at, "turn", session)

    latencies: list[float] = []
    prompt_chars = cached_chars = 0
    route_seconds = 0.0
    peak_imbalance: list[float] = []

    def begin(replica: Replica, req: Request, now: float) -> None:
        nonlocal cached_chars, prompt_chars
        replica.busy += 1
        hit = replica.cached_chars(req.keys)
        cached_chars += hit
        prompt_chars += len(req.prompt)
        prefill = (len(req.prompt) - hit) / CHARS_PER_TOKEN * args.prefill_ms / 1000
        cost = prefill + req.output_tokens * args.decode_ms / 1000
        replica.store(req.keys)
        push(now + cost, "done", (replica, req))

    while events:
        now, _, kind, payload = heapq.heappop(events)
        if kind == "turn":
            assert isinstance(payload, int)
            session = payload
            history, _ = conversations[session]
            prompt = history + "User: " + sentence(rng, rng.randint(5, 30))
            req = Request(session, prompt, rng.randint(20, 120), now, prefix_keys(prompt))
            started = time.perf_counter()
            name = choose(req)
            route_seconds += time.perf_counter() - started
            replica = pool[name]
            loads = [r.busy + len(r.queue) for r in pool.values()]
            mean = statistics.fmean(loads)
            peak_imbalance.append(max(loads) / mean if mean else 1.0)
            if replica.busy < replica.slots:
                begin(replica, req, now)
            else:
                replica.queue.append(req)
        else:
            replica, req = payload  # type: ignore[misc]
            replica.busy -= 1
            latencies.append(now - req.arrived)
            if replica.queue:
                begin(replica, replica.queue.popleft(), now)
            history, turns_left = conversations[req.session]
            answer = "Assistant: " + sentence(rng, req.output_tokens // 2)
            conversations[req.session] = (req.prompt + answer, turns_left - 1)
            if turns_left > 1:
                push(now + rng.expovariate(1 / args.think_seconds), "turn", req.session)

    latencies.sort()
    return {
        "requests": len(latencies),
        "cached": cached_chars / prompt_chars,
        "mean_s": statistics.fmean(latencies),
        "p95_s": latencies[int(0.95 * (len(latencies) - 1))],
        "imbalance": statistics.median(peak_imbalance),
        "route_us": route_seconds / len(latencies) * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", default="4,32,256")
    parser.add_argument("--sessions-per-replica", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=4, help="slots per replica")
    parser.add_argument("--cache-blocks", type=int, default=400, help="prefix cache per replica")
    parser.add_argument("--system-prompts", type=int, default=8)
    parser.add_argument("--think-seconds", type=float, default=5.0)
    parser.add_argument("--seconds-per-session-turn", type=float, default=2.0)
    parser.add_argument("--prefill-ms", type=float, default=0.25, help="per uncached prompt token")
    parser.add_argument("--decode-ms", type=float, default=20.0, help="per output token")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(
        f"{'replicas':>8} {'policy':<14} {'requests':>8} {'prompt cached':>13} "
        f"{'mean s':>7} {'p95 s':>7} {'load max/mean':>13} {'route µs':>9}"
    )
    for replicas in (int(n) for n in args.replicas.split(",")):
        for policy in ("random", "least-loaded", "prefix-affinity"):
            r = simulate(policy, replicas, args)
            print(
                f"{replicas:>8} {policy:<14} {r['requests']:>8.0f} {r['cached']:>13.1%} "
                f"{r['mean_s']:>7.2f} {r['p95_s']:>7.2f} {r['imbalance']:>13.2f} "
                f"{r['route_us']:>9.1f}"
            )


if __name__ == "__main__":
    main()
