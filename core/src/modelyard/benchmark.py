"""`modelyard bench`: streamed chat load against any OpenAI-compatible server, measured side by side.

Several targets are run round by round in alternating order (A B, then B A, ...), so that neither
gets the quieter machine. Per concurrency level and target: tokens per second (median and min-max
over rounds), time to first token (p50/p95 of every request), and, when the server listens on this
machine, the CPU its process tree spent per generated token (utime + stime from /proc). The
1-minute load average is recorded before each run: figures taken on a busy machine say so.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx
import msgspec

from .errors import InvalidRequest
from .proctree import proc_stats, process_tree

PROMPT = "Write a long story about a lighthouse keeper and the sea."


class Target(msgspec.Struct, frozen=True):
    url: str  # the server's base URL, with or without /v1
    model: str
    # Every request generates exactly max_tokens (vLLM, llama.cpp and modelyard take ignore_eos).
    ignore_eos: bool = True
    api_key: str | None = None  # sent as Bearer; never written to the report

    @property
    def api(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v1") else f"{base}/v1"

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class Run(msgspec.Struct):
    """One target at one concurrency level in one round."""

    target: int
    concurrency: int
    round: int
    load_average: float
    seconds: float
    tokens: int
    tokens_per_second: float
    ttft: list[float]
    cpu_ms_per_token: float | None  # the server's whole process tree (its runners included)
    server_cpu_ms_per_token: float | None  # the listening process alone


class Level(msgspec.Struct):
    """One target at one concurrency level, over the rounds."""

    target: int
    url: str
    model: str
    concurrency: int
    tokens_per_second: float
    tokens_per_second_min: float
    tokens_per_second_max: float
    ttft_p50: float
    ttft_p95: float
    cpu_ms_per_token: float | None
    server_cpu_ms_per_token: float | None
    load_averages: list[float]


class Report(msgspec.Struct):
    date: str
    machine: str
    requests: int
    max_tokens: int
    rounds: int
    levels: list[Level]
    runs: list[Run]


def check(target: Target, timeout: float = 10) -> None:
    """The server answers and serves the model; otherwise one clear InvalidRequest."""
    try:
        reply = httpx.get(f"{target.api}/models", timeout=timeout, headers=target.headers)
    except httpx.HTTPError as exc:
        raise InvalidRequest(
            f"{target.url} does not answer ({type(exc).__name__}: {exc})"
        ) from None
    if reply.status_code != 200:
        raise InvalidRequest(
            f"{target.url}/v1/models answered {reply.status_code}: {reply.text[:200]}"
        )
    ids = [item.get("id") for item in reply.json().get("data", [])]
    if target.model not in ids:
        raise InvalidRequest(
            f"{target.url} has no model {target.model!r} (it has: {', '.join(map(str, ids)) or 'none'})"
        )


def server_pid(url: str) -> int | None:
    """The pid of the process listening on the URL's port on this machine, when it is local."""
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":  # LISTEN
                inodes.add(fields[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (utime + stime) of ``pid``'s whole tree, and of ``pid`` alone, from one scan."""
    stats = proc_stats()
    tree = sum(stats[p][1] for p in process_tree(pid, stats) if p in stats)
    return tree, stats[pid][1] if pid in stats else 0.0


async def _one(client: httpx.AsyncClient, target: Target, max_tokens: int) -> tuple[float, int]:
    """One streamed chat: (seconds to the first text, completion tokens)."""
    body = {
        "model": target.model,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if target.ignore_eos:
        body["ignore_eos"] = True
    start = time.perf_counter()
    first: float | None = None
    tokens = chunks = 0
    async with _opened(client, f"{target.api}/chat/completions", body) as reply:
        if reply.status_code != 200:
            raise InvalidRequest(
                f"{target.url} answered {reply.status_code}: {(await reply.aread())[:200]!r}"
            )
        async for line in reply.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = msgspec.json.decode(line[6:])
            for choice in chunk.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    chunks += 1
                    first = first if first is not None else time.perf_counter() - start
            if chunk.get("usage"):
                tokens = int(chunk["usage"].get("completion_tokens") or 0)
    return (first if first is not None else time.perf_counter() - start), tokens or chunks


@contextlib.asynccontextmanager
async def _opened(
    client: httpx.AsyncClient, url: str, body: dict[str, Any]
) -> AsyncIterator[httpx.Response]:
    """``client.stream`` that asks once more when a kept-alive connection was closed before any
    answer (llama.cpp's own server closes a connection after a number of requests), as browsers do."""
    for attempt in range(2):
        opened = False
        try:
            async with client.stream("POST", url, json=body) as reply:
                opened = True
                yield reply
            return
        except httpx.RemoteProtocolError:
            if opened or attempt:
                raise


async def _load(
    target: Target, concurrency: int, requests: int, max_tokens: int
) -> tuple[float, int, list[float]]:
    ttft: list[float] = []
    tokens = 0
    pending = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal tokens
        for _ in pending:
            first, produced = await _one(client, target, max_tokens)
            ttft.append(first)
            tokens += produced

    start = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(timeout=600, limits=limits, headers=target.headers) as client,
            anyio.create_task_group() as tg,
        ):
            for _ in range(min(concurrency, requests)):
                tg.start_soon(worker, client)
    except ExceptionGroup as group:  # one line for the user, not a tree of tracebacks
        first: BaseException = group
        while isinstance(first, ExceptionGroup):
            first = first.exceptions[0]
        if isinstance(first, httpx.TransportError):
            raise InvalidRequest(
                f"{target.url} stopped answering during the run: {first}"
            ) from None
        raise first from None
    return time.perf_counter() - start, tokens, ttft


def run(
    targets: Sequence[Target],
    concurrency: Sequence[int],
    requests: int,
    max_tokens: int,
    rounds: int,
    progress: Callable[[str], None] = lambda message: None,
) -> Report:
    for target in targets:
        check(target)
    pids = [server_pid(target.url) for target in targets]
    runs: list[Run] = []
    for level in concurrency:
        for round_no in range(rounds):
            order = range(len(targets)) if round_no % 2 == 0 else reversed(range(len(targets)))
            for index in order:
                target = targets[index]
                load = os.getloadavg()[0]
                progress(
                    f"concurrency {level}, round {round_no + 1}/{rounds}: {target.url} {target.model}"
                )
                pid = pids[index]
                before = _cpu(pid)
                seconds, tokens, ttft = anyio.run(_load, target, level, requests, max_tokens)
                after = _cpu(pid)
                cpu, own = (
                    ((after[0] - before[0]) * 1000 / tokens, (after[1] - before[1]) * 1000 / tokens)
                    if before and after and tokens
                    else (None, None)
                )
                runs.append(
                    Run(
                        index,
                        level,
                        round_no,
                        load,
                        seconds,
                        tokens,
                        tokens / seconds,
                        ttft,
                        cpu,
                        own,
                    )
                )
    return Report(
        date=time.strftime("%Y-%m-%d %H:%M"),
        machine=f"{os.uname().machine}, {os.cpu_count()} CPUs",
        requests=requests,
        max_tokens=max_tokens,
        rounds=rounds,
        levels=_summarise(targets, concurrency, runs),
        runs=runs,
    )


def _cpu(pid: int | None) -> tuple[float, float] | None:
    """``cpu_seconds``, or None when the server does not run on this machine."""
    return None if pid is None else cpu_seconds(pid)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _summarise(
    targets: Sequence[Target], concurrency: Sequence[int], runs: list[Run]
) -> list[Level]:
    levels = []
    for level in concurrency:
        for index, target in enumerate(targets):
            mine = [r for r in runs if r.target == index and r.concurrency == level]
            rates = [r.tokens_per_second for r in mine]
            ttft = sorted(t for r in mine for t in r.ttft)
            levels.append(
                Level(
                    target=index,
                    url=target.url,
                    model=target.model,
                    concurrency=level,
                    tokens_per_second=statistics.median(rates),
                    tokens_per_second_min=min(rates),
                    tokens_per_second_max=max(rates),
                    ttft_p50=_percentile(ttft, 0.5),
                    ttft_p95=_percentile(ttft, 0.95),
                    cpu_ms_per_token=_median([r.cpu_ms_per_token for r in mine]),
                    server_cpu_ms_per_token=_median([r.server_cpu_ms_per_token for r in mine]),
                    load_averages=[r.load_average for r in mine],
                )
            )
    return levels


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]
