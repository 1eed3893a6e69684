"""What the server needs from the model manager, and how a model record looks on the wire.

The manager (``modelyard.runner.ModelManager``) owns the runners; the server only talks to it
through the methods below. Describe dicts follow Xinference's keys (xinference-client dispatches on
``model_type`` and ``model_ability``) plus OpenAI's ``id/object/created/owned_by`` and modelyard's
own ``state``, ``progress``, ``error`` and ``pid``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import msgspec

from ..proctree import tree_resident_bytes
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from ..specs import LaunchRequest, format_size
from ..states import StateView

Chunk = dict[str, Any]


class Record(StateView, Protocol):
    """What the server reads of a model record (read-only: only the manager changes records)."""

    @property
    def model_name(self) -> str: ...
    @property
    def model_type(self) -> str: ...
    @property
    def family(self) -> Any: ...
    @property
    def spec(self) -> Any: ...
    @property
    def quantization(self) -> str | None: ...
    @property
    def engine(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def context_length(self) -> int | None: ...
    @property
    def abilities(self) -> Sequence[str]: ...
    @property
    def params(self) -> dict[str, Any]: ...
    @property
    def created(self) -> float: ...
    @property
    def replica(self) -> int: ...


class Manager(Protocol):
    async def launch(self, request: LaunchRequest, *, wait_ready: bool = True) -> str: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def list(self) -> Sequence[Record]: ...
    def get(self, uid: str) -> Record: ...
    async def terminate(self, uid: str) -> None: ...
    def progress(self, uid: str) -> dict[str, Any]: ...
    async def logs(self, uid: str, lines: int) -> Sequence[str]: ...
    async def cancel(self, uid: str) -> None: ...
    async def ensure_ready(self, uid: str) -> Record: ...
    def abort(self, uid: str, request_id: str) -> dict[str, str]: ...
    async def scale(self, uid: str, replica: int, *, drain_timeout: float = ...) -> Record: ...
    async def add_replicas(self, uid: str, count: int = 1) -> Record: ...
    async def remove_replica(
        self, uid: str, index: int, *, drain_timeout: float = ...
    ) -> Record: ...
    def chat(
        self, uid: str, request: ChatCompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]: ...
    def complete(
        self, uid: str, request: CompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]: ...
    async def embed(
        self, uid: str, request: EmbeddingRequest, *, request_id: str | None = None
    ) -> dict[str, Any]: ...
    async def rerank(
        self, uid: str, request: RerankRequest, *, request_id: str | None = None
    ) -> dict[str, Any]: ...
    async def aclose(self) -> None: ...


def describe(record: Record) -> dict[str, Any]:
    """Xinference's describe dict (plus modelyard's state) for one model."""
    family, spec = record.family, record.spec
    abilities = list(record.abilities or getattr(family, "model_ability", ()) or ())
    source = spec.sources[0] if spec is not None and getattr(spec, "sources", None) else None
    body: dict[str, Any] = {
        "model_type": record.model_type,
        "model_name": record.model_name,
        "model_engine": record.engine,
        "model_ability": abilities,
        "model_format": getattr(spec, "model_format", None),
        "model_size_in_billions": format_size(spec.model_size_in_billions)
        if spec is not None
        else None,
        "quantization": record.quantization,
        "model_hub": getattr(source, "hub", None),
        "revision": getattr(source, "revision", None),
        "model_description": getattr(family, "model_description", ""),
        "context_length": record.context_length,
        "accelerators": [],
        "replica": getattr(record, "replica", 1),
        "n_worker": 1,
        "state": record.state,
        "progress": record.progress,
        "error": record.error,
        "pid": record.pid,
        "node": getattr(record, "node", None),
        "node_id": getattr(record, "node_id", None),
        # The runner's process tree, now: what terminating the model would give back (read from
        # this machine's /proc, so only for a runner that runs here).
        "resident_memory_bytes": local_resident_bytes(record),
        "restarts": getattr(record, "restarts", 0),
        "memory_estimate": getattr(record, "memory_estimate", None),
        "request_timeout": getattr(record, "request_timeout", None),
        "engine_params": dict(record.params or {}),
        # Models on demand: why this engine, how long it stays loaded idle, what happened to it.
        "engine_reason": getattr(record, "engine_reason", None),
        "keep_alive": getattr(record, "keep_alive", None),
        "last_used": getattr(record, "last_used", None),
        "in_flight": getattr(record, "in_flight", 0),
        "loads": getattr(record, "loads", 0),
        "events": msgspec.to_builtins(getattr(record, "events", [])),
        "replicas": msgspec.to_builtins(getattr(record, "replicas", [])),
    }
    languages = list(getattr(family, "model_lang", ()) or ())
    if record.model_type == "LLM":
        body["model_lang"] = languages
        body["model_family"] = getattr(family, "model_family", None)
    else:
        body["language"] = languages
        body["max_tokens"] = getattr(family, "max_tokens", None)
        if record.model_type == "embedding":
            body["dimensions"] = getattr(family, "dimensions", None)
        else:
            body["type"] = getattr(family, "type", "normal")
    return body


def model_object(record: Record) -> dict[str, Any]:
    """An OpenAI model object: the describe dict under ``id/object/created/owned_by``."""
    return {
        "id": record.uid,
        "object": "model",
        "created": int(record.created or 0),
        "owned_by": "modelyard",
        **describe(record),
    }


def warm_runners(manager: object) -> list[dict[str, Any]]:
    """The idle runners kept for fast launches (``ModelManager.warm``), with their memory."""
    warm = getattr(manager, "warm", None)  # managers that keep none (tests, remote) have none
    return warm.describe() if warm is not None else []


def local_resident_bytes(
    record: Record, stats: dict[int, tuple[int, float]] | None = None
) -> int | None:
    """Resident memory of the record's runner trees (one per replica) when they run on this
    machine, else None."""
    if getattr(record, "node", None) is not None:
        return None
    pids = [r.pid for r in getattr(record, "replicas", ()) if r.node is None] or [record.pid]
    found = [tree_resident_bytes(pid, stats) for pid in pids]
    sizes = [size for size in found if size is not None]
    return sum(sizes) if sizes else None
