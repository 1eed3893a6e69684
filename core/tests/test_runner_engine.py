"""A tiny engine plugin for runner/manager tests (no tests in this module).

Registered in a runner subprocess with ``MODELYARD_PLUGIN_MODULES=test_runner_engine`` and this
folder on ``PYTHONPATH``. Engine "echo" streams the words of the last user message back. Launch
params steer it: ``word_delay`` (seconds between words), ``load_delay``, ``fail`` ("error": raise
InvalidRequest, "exit": os._exit(3), "segv": SIGSEGV during load), ``ballast_mb`` (memory held
while loaded), ``events`` (a file where it appends what happened to each request, by ``user`` tag).
Message commands: ``barrier N`` waits until N chat streams are active at once and reports the peak;
the word ``pid`` is answered with the runner's pid (which replica served it), ``frozen`` with the
number of objects frozen out of the garbage collector's reach.
"""

from __future__ import annotations

import difflib
import gc
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
from modelyard import hookimpl
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import InvalidRequest
from modelyard.schemas import ChatCompletionRequest, CompletionRequest, RerankRequest
from modelyard.specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

ENGINE = "echo"
PARAMS = {"word_delay", "load_delay", "fail", "ballast_mb", "events"}


@hookimpl
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    register(
        EngineInfo(
            ENGINE, ("LLM", "rerank"), ("chat", "generate", "rerank"), ("ggufv2", "pytorch"), "none"
        )
    )


@hookimpl
def match_engine(
    family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
) -> list[Match]:
    return [Match.yes(ENGINE)]


@hookimpl
def estimate_resources(engine: str, params: dict[str, Any]) -> Estimate | None:
    if engine != ENGINE:
        return None
    return Estimate(weights=int(params.get("estimate_bytes", 1 << 20)), kv_cache=0, overhead=0)


@hookimpl
def load_model(engine: str, params: dict[str, Any], path: Path) -> LoadedModel | None:
    if engine != ENGINE:
        return None
    unknown = sorted(set(params) - PARAMS - {"estimate_bytes"})
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(PARAMS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InvalidRequest(
            f"unknown echo engine parameter {unknown[0]!r}{hint}", param=f"params.{unknown[0]}"
        )
    time.sleep(float(params.get("load_delay", 0)))
    fail = params.get("fail")
    if fail == "error":
        raise InvalidRequest("echo was told to fail loading", param="params.fail")
    if fail == "exit":
        print("echo: exiting as told", file=sys.stderr, flush=True)
        os._exit(3)
    if fail == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    return EchoModel(params)


class EchoModel(LoadedModel):
    abilities = ("chat", "generate", "rerank")

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__(context_length=2048)
        self.word_delay = float(params.get("word_delay", 0))
        self.events = Path(params["events"]) if params.get("events") else None
        # Touch every page so the memory is really resident (counted in RSS).
        self.ballast = bytearray(b"\x01" * (int(params.get("ballast_mb", 0)) << 20))
        self.active = 0
        self.peak = 0

    def event(self, *words: object) -> None:
        if self.events is not None:
            with self.events.open("a") as handle:
                handle.write(" ".join(map(str, words)) + "\n")

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        return self._stream(request.messages[-1].text(), request.user or "-", chat=True)

    def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        prompt = (
            request.prompt
            if isinstance(request.prompt, str)
            else " ".join(map(str, request.prompt))
        )
        return self._stream(prompt, request.user or "-", chat=False)

    async def _stream(self, text: str, tag: str, *, chat: bool) -> AsyncIterator[Chunk]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.event("start", tag)
        sent, finished = 0, False
        try:
            words = text.split()
            if words[:1] == ["barrier"]:
                want = int(words[1])
                with anyio.move_on_after(10):
                    while self.peak < want:
                        await anyio.sleep(0.01)
                words = [f"peak={self.peak}"]
            commands = {
                "pid": lambda: f"pid={os.getpid()}",
                "frozen": lambda: f"frozen={gc.get_freeze_count()}",
            }
            words = [commands[word]() if word in commands else word for word in words]
            for word in words:
                await anyio.sleep(self.word_delay)
                delta = {"delta": {"content": word + " "}} if chat else {"text": word + " "}
                yield {"choices": [{"index": 0, **delta, "finish_reason": None}]}
                sent += 1
            yield {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": len(text.split()),
                    "completion_tokens": sent,
                    "total_tokens": sent,
                },
            }
            finished = True
        finally:
            self.active -= 1
            self.event("done" if finished else "closed", tag, sent)

    async def rerank(self, request: RerankRequest) -> dict[str, Any]:
        query = set(request.query.lower().split())
        results = [
            {"index": i, "relevance_score": float(len(query & set(doc.lower().split())))}
            for i, doc in enumerate(request.texts())
        ]
        return {"results": results, "usage": {"input_tokens": len(request.query.split())}}
