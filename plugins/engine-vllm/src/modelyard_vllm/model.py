"""A model loaded in vLLM's async engine, served through vLLM's own OpenAI layer in-process.

vLLM's OpenAI serving classes (the ones behind ``vllm serve``) do the chat template, tool-call
parsing, structured output (``response_format``, named/required ``tool_choice``), stop handling and
usage; modelyard hands them the validated request and passes their chunks on. All requests go to one
``AsyncLLM``, whose scheduler batches them continuously. A stream closed early aborts its request in
the engine, so a client that goes away stops costing compute.
"""

from __future__ import annotations

import uuid
from argparse import Namespace
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
import msgspec
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import ContextLengthExceeded, EngineError, InvalidRequest
from modelyard.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, to_plain
from modelyard.specs import Ability

from . import errors

# Keys the core fills in for every chunk; dropping them keeps frames small.
_CORE_KEYS = ("id", "object", "created", "model")


class VllmModel(LoadedModel):
    def __init__(
        self,
        engine: Any,
        args: Namespace,
        *,
        served_name: str,
        context_length: int,
        abilities: tuple[Ability, ...],
    ) -> None:
        super().__init__(context_length=context_length, abilities=abilities)
        self.engine = engine
        self.args = args
        self.served_name = served_name
        self._state: Any = None
        self._state_lock = anyio.Lock()

    async def _serving(self) -> Any:
        """vLLM's serving objects, built on first use: they must live on the loop that serves."""
        async with self._state_lock:
            if self._state is None:
                from starlette.datastructures import State
                from vllm.entrypoints.launchers.api_server.app_state import init_app_state

                state = State()
                tasks = await self.engine.get_supported_tasks()
                await init_app_state(self.engine, state, self.args, supported_tasks=tasks)
                self._state = state
        return self._state

    def _check_limit(self, limit: int | None) -> None:
        if limit is not None and limit > self.context_length:
            raise ContextLengthExceeded(
                f"max_tokens={limit} is more than this model's context length of {self.context_length} "
                f"tokens (vLLM max_model_len); ask for at most {self.context_length} tokens, or relaunch "
                "with a larger max_model_len if the model supports it",
                param="max_tokens",
            )

    def _body(self, request: msgspec.Struct) -> dict[str, Any]:
        body = to_plain(request)
        body["model"] = self.served_name
        # The client's id (X-Request-Id or request_id, set by the core) names the work in vLLM.
        body["request_id"] = body.get("request_id") or uuid.uuid4().hex
        if body.get("stream"):
            # Usage on the last chunk, always: the contract wants real counts at the end.
            body["stream_options"] = {"include_usage": True, "continuous_usage_stats": False}
        return body

    async def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        self._check_limit(request.token_limit)
        body = self._body(request)
        if (thinking := body.pop("enable_thinking", None)) is not None:
            body["chat_template_kwargs"] = {
                "enable_thinking": thinking,
                **(body.get("chat_template_kwargs") or {}),
            }
        from vllm.entrypoints.openai.chat_completion.protocol import (
            ChatCompletionRequest as VllmChat,
        )

        state = await self._serving()
        handler = getattr(state, "openai_serving_chat", None)
        if handler is None:
            raise InvalidRequest(
                "this model was loaded for embeddings and cannot chat", param="model"
            )
        # aclosing: closing this stream must close the inner one now, which aborts the request.
        async with aclosing(
            self._run(VllmChat, body, handler.create_chat_completion, "chatcmpl", "delta")
        ) as chunks:
            async for chunk in chunks:
                yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        self._check_limit(request.token_limit)
        body = self._body(request)
        from vllm.entrypoints.openai.completion.protocol import CompletionRequest as VllmCompletion

        state = await self._serving()
        handler = getattr(state, "openai_serving_completion", None)
        if handler is None:
            raise InvalidRequest(
                "this model was loaded for embeddings and cannot complete text", param="model"
            )
        async with aclosing(
            self._run(VllmCompletion, body, handler.create_completion, "cmpl", None)
        ) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _run(
        self,
        model_cls: Any,
        body: dict[str, Any],
        create: Any,
        prefix: str,
        message_key: str | None,
    ) -> AsyncGenerator[Chunk]:
        import pydantic
        from vllm.entrypoints.serve.engine.protocol import ErrorResponse

        try:
            vllm_request = model_cls.model_validate(body)
        except pydantic.ValidationError as exc:
            raise InvalidRequest(f"vLLM rejected the request: {exc}") from None
        try:
            result = await create(vllm_request, None)
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        if isinstance(result, ErrorResponse):
            raise errors.from_error_body(result.model_dump())
        if not body.get("stream"):
            yield _whole_response(result.model_dump(exclude_none=True), message_key)
            return
        # vLLM's request id is "<prefix>-<our id>"; the first chunk confirms it.
        request_ids = {f"{prefix}-{body['request_id']}"}
        finished = False
        try:
            async for event in result:
                for data in _sse_data(event):
                    if data == "[DONE]":
                        finished = True
                        continue
                    chunk = msgspec.json.decode(data)
                    if "error" in chunk:
                        raise errors.from_error_body(chunk)
                    if (chunk_id := chunk.get("id")) is not None:
                        request_ids.add(chunk_id)
                    yield _trim(chunk)
            finished = True
        finally:
            with anyio.CancelScope(shield=True):
                await result.aclose()
                if not finished:
                    # The client went away: free the sequence's slot and KV cache now.
                    await self.engine.abort(sorted(request_ids))

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        from vllm.entrypoints.pooling.embed.protocol import EmbeddingCompletionRequest

        body = to_plain(request)
        body["model"] = self.served_name
        if body.pop("truncate", False):
            body["truncate_prompt_tokens"] = -1
        state = await self._serving()
        handler = getattr(state, "serving_embedding", None)
        if handler is None:
            raise InvalidRequest(
                "this model was not loaded for embeddings; launch it as an embedding model "
                "(vLLM's pooling runner)",
                param="model",
            )
        try:
            response = await handler(EmbeddingCompletionRequest.model_validate(body), None)
        except Exception as exc:
            raise errors.from_exception(exc) from exc
        result = msgspec.json.decode(bytes(response.body))
        if response.status_code != 200 or "error" in result:
            raise errors.from_error_body(result)
        usage = result.get("usage") or {}
        return {
            "data": [{"index": d["index"], "embedding": d["embedding"]} for d in result["data"]],
            "usage": {
                "prompt_tokens": usage.get("prompt_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        }

    async def close(self) -> None:
        engine, self.engine, self._state = self.engine, None, None
        if engine is None:
            return
        # Stop vLLM's output loop first, or it reports the engine process it is about to lose.
        if (handler := getattr(engine, "output_handler", None)) is not None:
            handler.cancel()
        resources = getattr(getattr(engine, "engine_core", None), "resources", None)
        # Shut down now, on our terms; vLLM's __del__ would otherwise try again at interpreter exit.
        await anyio.to_thread.run_sync(engine.shutdown)
        engine.shutdown = _noop
        await _close_zmq_context(resources)


async def _close_zmq_context(resources: Any) -> None:
    """vLLM's shutdown closes its sockets through a callback on this loop and leaves the ZMQ context
    to the garbage collector (which warns about it). Once the sockets are closed, close it here."""
    if resources is None:
        return
    names = (
        "output_socket",
        "input_socket",
        "first_req_send_socket",
        "first_req_rcv_socket",
        "stats_update_socket",
    )
    for _ in range(100):
        sockets = [getattr(resources, name, None) for name in names]
        if all(sock is None or sock.closed for sock in sockets):
            break
        await anyio.sleep(0.01)
    else:
        return  # a socket is still open: terminating the context would block
    ctx = getattr(resources, "ctx", None)
    if ctx is not None and not ctx.closed:
        ctx.destroy(linger=0)


def _trim(chunk: Chunk) -> Chunk:
    """Drop what the core fills in and vLLM's null extras (token_ids, prompt_text, ...); keep
    ``finish_reason``, which the contract has on every choice."""
    for key in _CORE_KEYS:
        chunk.pop(key, None)
    for key in [k for k, v in chunk.items() if v is None]:
        del chunk[key]
    for choice in chunk.get("choices", ()):
        for key in [k for k, v in choice.items() if v is None and k != "finish_reason"]:
            del choice[key]
    return chunk


def _sse_data(event: str) -> list[str]:
    if not isinstance(event, str):
        raise EngineError(f"vLLM streamed an unexpected event {event!r}")
    return [line[6:] for line in event.splitlines() if line.startswith("data: ")]


def _whole_response(response: dict[str, Any], message_key: str | None) -> Chunk:
    """A non-streamed vLLM response as one chunk: the chat message becomes one delta, tool calls
    numbered by ``index`` so that the core's folding keeps them apart."""
    choices = []
    for choice in response.get("choices", []):
        choice = dict(choice)
        if message_key is not None and "message" in choice:
            message = dict(choice.pop("message"))
            calls = message.get("tool_calls") or []
            message["tool_calls"] = [{"index": i, **call} for i, call in enumerate(calls)] or None
            choice[message_key] = {k: v for k, v in message.items() if v is not None}
        choices.append(choice)
    chunk: Chunk = {"choices": choices}
    if response.get("usage"):
        chunk["usage"] = response["usage"]
    return chunk


def _noop(*args: Any, **kwargs: Any) -> None:
    return None
