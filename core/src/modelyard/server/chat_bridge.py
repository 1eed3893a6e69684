"""Running one chat generation for a route that speaks another API (Anthropic, Responses).

Those routes translate their body into a ``ChatCompletionRequest``, start it here on the same
manager as ``/v1/chat/completions`` (so every engine serves them), and turn the engine's chunks
into their own shapes: ``drain`` for a whole answer, ``stream`` for server-sent events. Both stop
the engine when the client leaves, as the OpenAI routes do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.requests import Request

from ..errors import EngineError, ModelyardError
from ..schemas import ChatCompletionRequest
from .errors import invalid_body
from .limits import check_parts
from .metrics import GenerationObserver
from .openai_routes import manager_of, ready_model, request_id_of
from .sse import aclose, race_disconnect

log = logging.getLogger("modelyard.server")

Chunk = dict[str, Any]


def checked(chat: ChatCompletionRequest) -> ChatCompletionRequest:
    """``chat`` validated exactly as ``/v1/chat/completions`` validates its body: ``Meta``
    constraints and ``__post_init__`` rules hold only when msgspec decodes, not when a translator
    builds the Struct. A failure is a 400 naming the field of the chat request."""
    try:
        return msgspec.convert(msgspec.to_builtins(chat), ChatCompletionRequest)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc, "request (as the chat request it becomes)") from None


class ChatRun:
    """A started generation: its first chunk (already taken, so that errors before any output
    are plain HTTP errors) and the rest of the engine's stream."""

    def __init__(
        self, source: AsyncIterator[Chunk], first: Chunk | None, observer: GenerationObserver
    ) -> None:
        self.source = source
        self.first = first
        self.observer = observer

    async def chunks(self) -> AsyncIterator[Chunk]:
        chunk = self.first
        while chunk is not None:
            error = chunk.get("error")
            if error is not None:
                message = error.get("message", str(error)) if isinstance(error, dict) else error
                raise EngineError(f"the engine failed: {message}")
            self.observer.see(chunk)
            yield chunk
            chunk = await anext(self.source, None)


async def start(request: Request, chat: ChatCompletionRequest) -> ChatRun:
    """Start ``chat`` on its model; raises ``ClientGone`` if the client left before any output."""
    record = await ready_model(request, chat.model, chat.keep_alive)
    # Images reach a text-only model as a 400 naming the part (in the chat form it became).
    check_parts(chat, record.uid, record.abilities)
    source = manager_of(request).chat(chat.model, chat, request_id=request_id_of(request))
    observer = GenerationObserver(getattr(request.app.state, "metrics", None), chat.model)
    try:
        first = await race_disconnect(request, lambda: anext(source, None))
    except BaseException:
        await aclose(source)
        raise
    return ChatRun(source, first, observer)


async def drain(request: Request, run: ChatRun, feed: Callable[[Chunk], object]) -> None:
    """Feed every chunk to ``feed``; raises ``ClientGone`` when the client leaves first."""

    async def read() -> None:
        async for chunk in run.chunks():
            feed(chunk)

    try:
        await race_disconnect(request, read)
    finally:
        await aclose(run.source)


async def stream(
    run: ChatRun,
    head: list[bytes],
    feed: Callable[[Chunk], list[bytes]],
    end: Callable[[], list[bytes]],
    fail: Callable[[ModelyardError], list[bytes]],
) -> AsyncIterator[bytes]:
    """The event bytes of a generation: ``head`` first, ``feed`` for each chunk, ``end`` after the
    last one, ``fail`` (then nothing more) when the generation fails midway."""
    try:
        for data in head:
            yield data
        async for chunk in run.chunks():
            for data in feed(chunk):
                yield data
        for data in end():
            yield data
    except Exception as exc:
        if isinstance(exc, ModelyardError):
            log.warning("generation failed midway: %s", exc.message)
            error = exc
        else:
            log.exception("generation failed midway")
            error = EngineError(f"generation failed: {type(exc).__name__}: {exc}")
        for data in fail(error):
            yield data
    finally:
        await aclose(run.source)
