"""Server-sent events for streamed completions, and cancelling generations whose client left.

Framing follows OpenAI: one ``data: <one-line JSON>`` event per chunk, ``data: [DONE]`` at the
end, ``data: {"error": {...}}`` (then the end) when the generation fails midway. A client that
disconnects must stop the engine: the response watches ``receive()`` for ``http.disconnect``
itself (whatever ASGI spec version the server speaks) and always closes the manager's iterator,
which is what tells the runner and the engine to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..errors import ModelyardError, Unavailable
from .errors import error_body

log = logging.getLogger("modelyard.server")

T = TypeVar("T")
Chunk = dict[str, Any]

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


class ClientGone(Exception):
    """The client disconnected before the answer was ready."""


def _stopping(scope: Scope) -> anyio.Event | None:
    """The app's "server is shutting down" event (see ``app.begin_shutdown``), if it has one."""
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "stopping", None)


def shutting_down() -> Unavailable:
    return Unavailable("the server is shutting down; retry against a running server", retry_after=5)


class Stamp(msgspec.Struct):
    """What the core puts on every chunk: one id per request, the object type, time and uid."""

    id: str
    object: str
    created: int
    model: str

    @classmethod
    def new(cls, prefix: str, object: str, model: str) -> Stamp:
        return cls(f"{prefix}-{uuid.uuid4().hex}", object, int(time.time()), model)

    def apply(self, chunk: Chunk) -> Chunk:
        return {
            **chunk,
            "id": self.id,
            "object": self.object,
            "created": self.created,
            "model": self.model,
        }


def frame(payload: Any) -> bytes:
    # msgspec never emits raw newlines inside a JSON document, so one event is one line.
    return b"data: " + msgspec.json.encode(payload) + b"\n\n"


def error_event(exc: BaseException) -> bytes:
    if isinstance(exc, ModelyardError):
        body = error_body(exc.message, exc.type, param=exc.param, code=exc.code)
    else:
        body = error_body(f"generation failed: {type(exc).__name__}: {exc}", "internal_error")
    return frame({"error": body["error"]})


def outgoing(chunk: Chunk, stamp: Stamp, include_usage: bool) -> list[Chunk]:
    """The chunks to send for one engine chunk. Engines put usage on their last chunk always;
    OpenAI sends it only when asked, as a separate final chunk with empty ``choices``."""
    chunk = stamp.apply(chunk)
    usage = chunk.pop("usage", None)
    if usage is None:
        return [chunk]
    out = [chunk] if chunk.get("choices") else []
    if include_usage:
        out.append({**stamp.apply({}), "choices": [], "usage": usage})
    return out


async def aclose(source: AsyncIterator[Any]) -> None:
    """Close an iterator even from a cancelled task: this is what stops the engine."""
    close = getattr(source, "aclose", None)
    if close is None:
        return
    with anyio.CancelScope(shield=True):
        try:
            await close()
        except Exception:
            log.exception("closing a generation failed")


async def events(
    source: AsyncIterator[Chunk],
    first: Chunk | None,
    stamp: Stamp,
    *,
    include_usage: bool,
    on_chunk: Callable[[Chunk], None] | None = None,
) -> AsyncIterator[bytes]:
    """SSE bytes for a generation whose first chunk was already taken (see ``race_disconnect``)."""
    try:
        chunk = first
        while chunk is not None:
            if chunk.get("error") is not None:
                yield frame({"error": _error_object(chunk["error"])})
                return
            if on_chunk is not None:
                on_chunk(chunk)
            for out in outgoing(chunk, stamp, include_usage):
                yield frame(out)
            chunk = await anext(source, None)
        yield DONE
    except Exception as exc:
        if isinstance(exc, ModelyardError):
            log.warning("generation %s failed midway: %s", stamp.id, exc.message)
        else:
            log.exception("generation %s failed midway", stamp.id)
        yield error_event(exc)
    finally:
        await aclose(source)


def _error_object(error: Any) -> dict[str, Any]:
    if isinstance(error, dict):
        message = str(error.get("message", error))
        return error_body(message, str(error.get("type", "engine_error")), code=error.get("code"))[
            "error"
        ]
    return error_body(str(error), "engine_error")["error"]


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def race_disconnect(request: Request, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` until it finishes or the client disconnects (then cancel it, raise ClientGone);
    a server shutting down cancels it too (``shutting_down``).

    Call only after the request body was read, so that ``receive()`` has nothing left to say but
    ``http.disconnect``. Plain asyncio tasks and one cancel of this task, not an anyio task group:
    this runs once per non-streamed request, and a group with its two spawned watchers was a third
    of the server's CPU for a small embeddings request."""
    task = asyncio.current_task()
    assert task is not None
    interrupted: list[str] = []  # "gone" or "stopped": why this task was cancelled

    def interrupt(why: str) -> None:
        if not interrupted:
            interrupted.append(why)
            task.cancel()

    async def watch_client() -> None:
        await _wait_for_disconnect(request.receive)
        interrupt("gone")

    async def watch_server(stopping: anyio.Event) -> None:
        await stopping.wait()
        interrupt("stopped")

    loop = asyncio.get_running_loop()
    watchers = [loop.create_task(watch_client())]
    stopping = _stopping(request.scope)
    if stopping is not None:
        watchers.append(loop.create_task(watch_server(stopping)))
    balanced = False  # this task's cancel count is back where it was before ours
    try:
        return await work()
    except asyncio.CancelledError:
        if interrupted:
            balanced = True
            if task.uncancel() == 0:  # ours alone: say why; anyone else's cancel goes through
                raise (ClientGone() if interrupted[0] == "gone" else shutting_down()) from None
        raise
    finally:
        for watcher in watchers:
            watcher.cancel()
        if interrupted and not balanced:
            task.uncancel()  # work swallowed our cancel and ended otherwise


class EventStream(Response):
    """A text/event-stream response that stops (and closes its iterator) when the client leaves."""

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = ended = stopped = False
        stopping = _stopping(scope)
        try:
            async with anyio.create_task_group() as group:

                async def stream() -> None:
                    nonlocal started, ended
                    try:
                        await send(
                            {
                                "type": "http.response.start",
                                "status": 200,
                                "headers": self.raw_headers,
                            }
                        )
                        started = True
                        async for data in self.body_iterator:
                            await send(
                                {"type": "http.response.body", "body": data, "more_body": True}
                            )
                        ended = True
                        await send({"type": "http.response.body", "body": b"", "more_body": False})
                    except OSError:  # the connection is gone (ASGI 2.4 servers raise on send)
                        ended = True
                    group.cancel_scope.cancel()

                async def stop(event: anyio.Event) -> None:
                    nonlocal stopped
                    await event.wait()
                    stopped = True
                    group.cancel_scope.cancel()

                group.start_soon(stream)
                if stopping is not None:
                    group.start_soon(stop, stopping)
                await _wait_for_disconnect(receive)
                group.cancel_scope.cancel()
            if stopped and started and not ended:
                # The server is going down: end the stream the way a failed generation ends.
                log.info("ending a stream: the server is shutting down")
                with contextlib.suppress(OSError):
                    last = error_event(shutting_down())
                    await send({"type": "http.response.body", "body": last, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()
