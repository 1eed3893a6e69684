"""Anthropic Messages API: ``POST /v1/messages`` and ``/v1/messages/count_tokens``.

Served from the same engines as the OpenAI routes: the body is translated to a chat request
(``anthropic_convert``) and run through ``chat_bridge``. Every error on these routes leaves in
Anthropic's shape (``{"type": "error", "error": {"type", "message"}}``) with the same status the
OpenAI routes would give, so the ``anthropic`` SDK raises its matching exception. There is no
authentication yet, so the SDK's ``x-api-key`` header is accepted whatever it holds.

``count_tokens`` has no tokenizer call to use (the engine contract has none): it runs the prompt
with ``max_tokens=1`` and reports the engine's own ``prompt_tokens``, i.e. the exact count after
the chat template, at the price of one prefill.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import ModelyardError
from . import anthropic_schemas as schemas
from . import chat_bridge
from .anthropic_convert import Event, EventWriter, error_body, to_chat
from .errors import JSONResponse, decode_body, observe_error
from .openai_routes import CLIENT_CLOSED
from .sse import ClientGone, EventStream

log = logging.getLogger("modelyard.server")

Endpoint = Callable[[Request], Awaitable[Response]]


def anthropic_errors(endpoint: Endpoint) -> Endpoint:
    """Answer every failure of ``endpoint`` in Anthropic's error shape."""

    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ModelyardError as exc:
            observe_error(request.scope, type(exc).__name__)
            headers = {"retry-after": str(exc.retry_after)} if exc.retry_after else None
            body = error_body(exc.status, exc.message)
            return JSONResponse(body, status_code=exc.status, headers=headers)
        except Exception as exc:
            log.exception("unexpected error in %s %s", request.method, request.url.path)
            observe_error(request.scope, "InternalError")
            message = f"internal error ({type(exc).__name__}: {exc}); this is a modelyard bug, please report it"
            return JSONResponse(error_body(500, message), status_code=500)

    return guarded


def frame(events: list[Event]) -> list[bytes]:
    return [
        b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(data) + b"\n\n"
        for name, data in events
    ]


@anthropic_errors
async def messages(request: Request) -> Response:
    body = await decode_body(request, schemas.MESSAGES)
    chat = to_chat(body)
    writer = EventWriter(body.model, body.stop_sequences)
    try:
        run = await chat_bridge.start(request, chat)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    if body.stream:

        def fail(exc: ModelyardError) -> list[bytes]:
            return frame([("error", error_body(exc.status, exc.message))])

        head = frame(writer.start())
        feed = lambda chunk: frame(writer.feed(chunk))  # noqa: E731
        return EventStream(
            chat_bridge.stream(run, head, feed, lambda: frame(writer.finish()), fail)
        )
    try:
        await chat_bridge.drain(request, run, writer.feed)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse(writer.message())


@anthropic_errors
async def count_tokens(request: Request) -> Response:
    body = await decode_body(request, schemas.COUNT_TOKENS)
    chat = to_chat(body, max_tokens=1)
    try:
        run = await chat_bridge.start(request, chat)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    usage: dict[str, Any] = {}

    def keep_usage(chunk: dict[str, Any]) -> None:
        usage.update(chunk.get("usage") or {})

    try:
        await chat_bridge.drain(request, run, keep_usage)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    return JSONResponse({"input_tokens": int(usage.get("prompt_tokens", 0))})
