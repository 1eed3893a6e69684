"""OpenAI inference routes: chat, completions, embeddings, rerank.

Bodies are validated once here (msgspec Decoders built at import) and handed to the manager as
typed requests. Every request runs in its own task and goes to the manager at once: queueing and
batching belong to the manager and the engine, whose 429 (queue full) passes through unchanged.
"""

from __future__ import annotations

import base64
import struct
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from ..errors import EngineError
from ..keepalive import parse_keep_alive
from ..schemas import ChatCompletionRequest, CompletionRequest
from ..states import require_ready
from . import bodies
from .aggregate import Folder
from .errors import JSONResponse, decode_body
from .limits import check_parts
from .metrics import GenerationObserver, Metrics
from .models import Manager, Record
from .sse import ClientGone, EventStream, Stamp, aclose, events, race_disconnect

CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it, the metrics do


Chunk = dict[str, Any]


def manager_of(request: Request) -> Manager:
    return request.app.state.manager


def _metrics(request: Request) -> Metrics | None:
    return getattr(request.app.state, "metrics", None)


async def ready_model(request: Request, uid: str, keep_alive: object = None) -> Record:
    """The record of a model that can answer now; 404 when unknown, 503 while loading or failed.
    An unloaded model is loaded again (and, with --auto-launch, a catalog model launched) first;
    a ``keep_alive`` that is not a duration is a 400 before that."""
    if keep_alive is not None:
        parse_keep_alive(keep_alive)
    record = await manager_of(request).ensure_ready(uid)
    request.state.model = record.uid
    require_ready(record)
    return record


def request_id_of(request: Request) -> str | None:
    """The id ``POST /v1/models/{uid}/requests/{id}/abort`` takes: the X-Request-Id header
    (the body's ``request_id`` field is read by the manager)."""
    return request.headers.get("x-request-id") or None


async def chat_completions(request: Request) -> Response:
    body = await decode_body(request, bodies.CHAT)
    return await _generate(request, body, "chat")


async def completions(request: Request) -> Response:
    body = await decode_body(request, bodies.COMPLETION)
    return await _generate(request, body, "text")


async def _generate(
    request: Request, body: ChatCompletionRequest | CompletionRequest, kind: Literal["chat", "text"]
) -> Response:
    record = await ready_model(request, body.model, body.keep_alive)
    manager = manager_of(request)
    # Named on the response too, so a client that sent none can still abort its stream.
    rid = request_id_of(request) or body.request_id or uuid.uuid4().hex
    if isinstance(body, ChatCompletionRequest):
        check_parts(body, record.uid, record.abilities)
        stamp = Stamp.new("chatcmpl", "chat.completion.chunk", body.model)
        source = manager.chat(body.model, body, request_id=rid)
    else:
        stamp = Stamp.new("cmpl", "text_completion", body.model)
        source = manager.complete(body.model, body, request_id=rid)
    observer = GenerationObserver(_metrics(request), body.model)
    try:
        # Errors before the first chunk (context too long, queue full...) are plain HTTP errors.
        first = await race_disconnect(request, lambda: anext(source, None))
    except ClientGone:
        await aclose(source)
        return Response(status_code=CLIENT_CLOSED)
    except BaseException:
        await aclose(source)
        raise
    if body.stream:
        chunks = events(
            source, first, stamp, include_usage=body.include_usage, on_chunk=observer.see
        )
        stream = EventStream(chunks)
        stream.headers["x-request-id"] = rid
        return stream

    folder = Folder(kind)
    try:
        await race_disconnect(request, lambda: _fold(folder, first, source, observer))
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    finally:
        await aclose(source)
    reply = folder.result(id=stamp.id, created=stamp.created, model=stamp.model)
    return JSONResponse(reply, headers={"x-request-id": rid})


async def _fold(
    folder: Folder, first: Chunk | None, source: AsyncIterator[Chunk], observer: GenerationObserver
) -> None:
    chunk = first
    while chunk is not None:
        error = chunk.get("error")
        if error is not None:
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            raise EngineError(f"the engine failed: {message}")
        observer.see(chunk)
        folder.add(chunk)
        chunk = await anext(source, None)


def _as_base64(vector: Any) -> Any:
    """OpenAI's base64 encoding (the openai SDK's default): little-endian float32 bytes."""
    if isinstance(vector, list):
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


async def embeddings(request: Request) -> Response:
    body = await decode_body(request, bodies.EMBEDDING)
    await ready_model(request, body.model, body.keep_alive)
    manager = manager_of(request)
    rid = request_id_of(request)
    try:
        result = await race_disconnect(
            request, lambda: manager.embed(body.model, body, request_id=rid)
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    data = []
    for position, item in enumerate(result.get("data") or ()):
        vector = item.get("embedding")
        if body.encoding_format == "base64":
            vector = _as_base64(vector)
        data.append(
            {"index": item.get("index", position), "object": "embedding", "embedding": vector}
        )
    usage = result.get("usage") or {"prompt_tokens": 0, "total_tokens": 0}
    reply = {
        "object": "list",
        "model": body.model,
        "model_replica": f"{body.model}-rep0",
        "data": data,
        "usage": usage,
    }
    if result.get("truncated_inputs"):  # asked with truncate=true: say which inputs were cut
        reply["truncated_inputs"] = result["truncated_inputs"]
    return JSONResponse(reply)


async def rerank(request: Request) -> Response:
    body = await decode_body(request, bodies.RERANK)
    await ready_model(request, body.model, body.keep_alive)
    manager = manager_of(request)
    rid = request_id_of(request)
    try:
        result = await race_disconnect(
            request, lambda: manager.rerank(body.model, body, request_id=rid)
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    texts = body.texts()
    scored = sorted(result.get("results") or (), key=lambda r: r["relevance_score"], reverse=True)
    if body.top_n is not None:
        scored = scored[: body.top_n]
    # "document" only when asked for: clients (Dify) take a present key for a document.
    results = [
        {"index": item["index"], "relevance_score": item["relevance_score"]}
        | ({"document": {"text": texts[item["index"]]}} if body.return_documents else {})
        for item in scored
    ]
    usage = result.get("usage") or {}
    input_tokens = usage.get("input_tokens", 0)
    tokens = None
    if body.return_len:
        tokens = {"input_tokens": input_tokens, "output_tokens": usage.get("output_tokens", 0)}
    cut = result.get("truncated_documents")
    warnings = [f"documents {cut} were cut to the model's maximum length"] if cut else None
    # One body for the three dialects: Xinference/Cohere v1 (meta), Jina (usage), Cohere v2.
    meta = {"api_version": None, "billed_units": None, "tokens": tokens, "warnings": warnings}
    return JSONResponse(
        {
            "id": str(uuid.uuid4()),
            "model": body.model,
            "results": results,
            "meta": meta,
            "usage": {"total_tokens": input_tokens},
        }
    )
