"""The loaded model: xllamacpp's blocking, callback-based calls as async chunk streams.

Each request runs ``Server.handle_*`` in its own worker thread (xllamacpp releases the GIL, and
llama.cpp batches the concurrent requests in its parallel slots). The thread hands chunks to the
event loop through a memory object stream. A stream cannot be a child task of the async generator
that yields it (a task group must not stay open across ``yield``), hence a plain thread; the loop
itself never blocks. Closing the stream sets a flag that the next callback returns as True, which
tells llama.cpp to stop generating and free the slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from modelyard import toolcalls
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import Unsupported
from modelyard.loop_handoff import LoopHandoff, handoff_for, received
from modelyard.schemas import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    RerankRequest,
    to_plain,
)
from modelyard.specs import Ability

from . import completions
from .failures import Slots, error_in, from_error_body, from_exception

Handler = Callable[..., Any]
# Fields of our request schemas that llama.cpp does not know or names differently.
_DROP = (
    "model",
    "request_id",
    "user",
    "max_completion_tokens",
    "enable_thinking",  # the core has moved it into chat_template_kwargs
    "stop_token_ids",
)


def _body(request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    body = to_plain(request)
    for key in _DROP:
        body.pop(key, None)
    limit = request.token_limit
    if limit is not None:
        body["max_tokens"] = limit
    if "repetition_penalty" in body:
        body["repeat_penalty"] = body.pop("repetition_penalty")
    # Always stream, always with usage: the core folds chunks into one response when asked to.
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    return body


class LlamaCppModel(LoadedModel):
    def __init__(
        self,
        server: Any,
        *,
        slots: Slots,
        abilities: tuple[Ability, ...],
        tool_parser: str | None = None,
    ) -> None:
        super().__init__(context_length=slots.slot_context, abilities=abilities)
        self._server = server
        self.tool_parser = tool_parser
        self.slots = slots
        self._workers: set[threading.Thread] = set()
        self._stops: set[threading.Event] = set()

    def _require(self, ability: Ability, what: str) -> None:
        if ability not in self.abilities:
            hint = " (launch it with embedding=true)" if ability == "embed" else ""
            raise Unsupported(
                f"this model cannot {what}{hint}; it can: {', '.join(self.abilities)}",
                param="model",
            )

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        self._require("chat", "chat")
        body = _body(request)
        tool_plan = toolcalls.plan(request, self.tool_parser)
        if tool_plan is not None and tool_plan.forced_schema is not None:
            # llama.cpp takes tool_choice only as a string, and ignores it where it has no parser
            # for the model's template: its JSON-schema grammar holds the output to a call instead.
            body.pop("tool_choice", None)
            body["response_format"] = tool_plan.response_format()
        chunks = self._stream(
            self._server.handle_chat_completions, body, n=request.n, request_id=request.request_id
        )
        return chunks if tool_plan is None else toolcalls.with_tool_calls(chunks, tool_plan)

    def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        self._require("generate", "complete text")
        completions.check(request)
        body = _body(request)
        body.pop("echo", None)
        shape = completions.LegacyShape(request)
        return self._stream(
            self._server.handle_completions,
            body,
            n=request.n,
            rewrite=shape.rewrite,
            request_id=request.request_id,
        )

    async def _stream(
        self,
        handler: Handler,
        body: dict[str, Any],
        *,
        n: int,
        rewrite: Callable[[Chunk], None] | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[Chunk]:
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        stop = threading.Event()
        worker = threading.Thread(
            target=self._work,
            args=(handler, body, send, stop, handoff_for(asyncio.get_running_loop())),
            # llama.cpp's body has no request id: the worker carries it, so that a thread dump
            # (py-spy) names the request an abort or a hang is about.
            name=f"llamacpp-request-{request_id or 'anonymous'}",
            daemon=True,
        )
        self._stops.add(stop)
        self._workers.add(worker)
        worker.start()
        usage = completions.UsageSum(n)
        last: Chunk = {}
        try:
            async with receive:
                async for item in received(receive):
                    if item is None:  # llama.cpp opens a stream of several prompts with a null
                        continue
                    if isinstance(item, BaseException):
                        raise from_exception(item, self.slots)
                    error = error_in(item)
                    if error is not None:
                        raise from_error_body(error, self.slots)
                    item.pop("model", None)  # the GGUF path; the core sets the model's name
                    item.pop("timings", None)
                    last = item
                    if "usage" in item:
                        # Every choice ends with its own usage chunk: sum them into one, at the end.
                        choices = item.get("choices") or [{}]
                        usage.add(item.pop("usage"), choices[0].get("index", 0))
                        if not item.get("choices"):
                            continue
                    if rewrite is not None:
                        rewrite(item)
                    yield item
            if usage.prompt_tokens:
                yield {
                    **{k: v for k, v in last.items() if k in ("id", "created", "object")},
                    "choices": [],
                    "usage": usage.as_dict(),
                }
        finally:
            stop.set()  # the client went away or the stream ended: the next callback cancels
            send.close()  # here, on the loop: the worker's own close may come after the loop is gone
            self._stops.discard(stop)

    def _work(
        self,
        handler: Handler,
        body: dict[str, Any],
        send: MemoryObjectSendStream[Any],
        stop: threading.Event,
        handoff: LoopHandoff,
    ) -> None:
        """Runs in the worker thread: call llama.cpp, forward chunks, then close the stream.

        Chunks and the close are handed to the loop without waiting for it (callbacks run in the
        order they were posted): the thread never blocks on a loop that is busy or already gone
        (a blocking hand-over once hung a test's teardown), and the tokens that arrive while the
        loop is busy share one wakeup."""

        def put(item: Any) -> None:  # on the loop
            try:
                send.send_nowait(item)
            except Exception:  # the receiver closed: stop generating
                stop.set()

        def deliver(item: Any) -> None:
            try:
                handoff.post(put, item)
            except RuntimeError:  # the event loop is closed
                stop.set()

        def on_chunk(chunk: Any) -> bool:
            if not stop.is_set():
                deliver(chunk)
            return stop.is_set()

        try:
            result = handler(body, on_chunk)
            if result is not None and not stop.is_set():
                deliver(result)  # an {"error": ...} answer instead of a stream
        except BaseException as exc:
            deliver(exc)
        finally:
            with contextlib.suppress(
                RuntimeError
            ):  # the loop is gone; the consumer closed it already
                handoff.post(_close, send)
            self._workers.discard(threading.current_thread())

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        self._require("embed", "embed")
        if request.dimensions is not None:
            raise Unsupported(
                "llama.cpp returns embeddings at the model's full size; leave out dimensions",
                param="dimensions",
            )
        body = {"input": request.input, "encoding_format": "float"}
        result = await self._call(self._server.handle_embeddings, body)
        data = sorted(result.get("data", []), key=lambda item: item["index"])
        return {
            "data": [{"index": item["index"], "embedding": item["embedding"]} for item in data],
            "usage": _usage(result, ("prompt_tokens", "total_tokens")),
        }

    async def rerank(self, request: RerankRequest) -> dict[str, Any]:
        self._require("rerank", "rerank")
        body = {
            "query": request.query,
            "documents": request.texts(),
            "top_n": len(request.documents),
        }
        result = await self._call(self._server.handle_rerank, body)
        results = sorted(result.get("results", []), key=lambda item: item["index"])
        usage = result.get("usage") or {}
        tokens = usage.get("prompt_tokens", usage.get("total_tokens", 0))
        return {
            "results": [
                {"index": item["index"], "relevance_score": item["relevance_score"]}
                for item in results
            ],
            "usage": {"input_tokens": tokens},
        }

    async def _call(self, handler: Handler, body: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await anyio.to_thread.run_sync(handler, body)
        except Exception as exc:
            raise from_exception(exc, self.slots) from exc
        error = error_in(result)
        if error is not None:
            raise from_error_body(error, self.slots)
        return result

    async def close(self) -> None:
        """Cancel what is in flight, wait for the worker threads, then free llama.cpp's memory."""
        for stop in list(self._stops):
            stop.set()
        for worker in list(self._workers):
            await anyio.to_thread.run_sync(worker.join)
        holder, self._server = [self._server], None
        # llama.cpp's destructor joins its threads: let that happen off the event loop.
        await anyio.to_thread.run_sync(_release, holder)


def _close(send: MemoryObjectSendStream[Any]) -> None:
    send.close()


def _release(holder: list[Any]) -> None:
    holder.clear()  # drops what should be the last reference, in this worker thread


def _usage(result: dict[str, Any], keys: tuple[str, ...]) -> dict[str, int]:
    usage = result.get("usage") or {}
    return {key: int(usage.get(key, 0)) for key in keys}
