"""A model loaded in SGLang's ``Engine``, served through its streaming ``async_generate``.

SGLang's tokenizer manager, scheduler (radix cache, continuous batching) and detokenizer run in
their own processes; this runner process holds the ``Engine`` and its tokenizer manager, on the
runner's event loop. Chat goes through the model's chat template here (so the prompt's token count
is exact and checked against the context before SGLang queues it); ``response_format`` and forced
tool calls are held by SGLang's grammar backend (xgrammar); tool calls in the text are found by
SGLang's own parser for the model's format (``tools``), or modelyard's shared one where SGLang has
none. A stream closed early aborts its request in SGLang by its request id.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import anyio
from modelyard import toolcalls
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelyardError,
    Unsupported,
)
from modelyard.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelyard.specs import Ability
from modelyard.templating import template_arguments

from .engine_thread import EngineThread
from .rule import ENGINE
from .tools import SglangToolCalls, has_detector

log = logging.getLogger("modelyard.sglang")

Request = ChatCompletionRequest | CompletionRequest
_FINISH_REASONS = {"stop": "stop", "length": "length"}


class SglangModel(LoadedModel):
    def __init__(
        self,
        engine: Any,
        *,
        context_length: int,
        abilities: tuple[Ability, ...],
        tool_parser: str | None,
        store: Any = None,
        home: EngineThread | None = None,
    ) -> None:
        super().__init__(context_length=context_length, abilities=abilities)
        self.engine = engine
        self.store = store  # the loopback rendezvous store SGLang's scheduler joined (store.py)
        self.home = home  # the thread that started the engine, alive until it is shut down
        self.tokenizer = engine.tokenizer_manager.tokenizer
        self.tool_parser = tool_parser
        self.aborted = 0  # requests this model aborted in SGLang (clients that went away)

    async def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        if "chat" not in self.abilities:
            raise Unsupported("this model was loaded for embeddings and cannot chat", param="model")
        _check_common(request)
        if request.logprobs or request.top_logprobs:
            raise Unsupported(
                "logprobs are not supported by the SGLang plugin yet", param="logprobs"
            )
        plan = toolcalls.plan(request, self.tool_parser)  # None without tools; 400 for a bad choice
        own = None
        if plan is not None and has_detector(self.tool_parser):
            assert self.tool_parser is not None
            own = SglangToolCalls.for_request(request, self.tool_parser, self.tokenizer)
        text = await anyio.to_thread.run_sync(self._render, request)
        ids = await anyio.to_thread.run_sync(self._encode, text, False)
        sampling = self._sampling(request, ids, "messages")
        held: tuple[str, str] | None = None  # the grammar the output is held to: one at most
        if own is not None:
            # Call markers may be special tokens (Llama's <|python_tag|>): keep them, as SGLang does.
            sampling["skip_special_tokens"] = False
            held = own.constraint
        elif plan is not None and plan.forced_schema is not None:
            held = ("json_schema", json.dumps(plan.forced_schema))
        if held is None and (schema := _response_schema(request)) is not None:
            held = ("json_schema", schema)
        if held is not None:
            sampling[held[0]] = held[1]
        chunks = self._chat_chunks(self._generate(ids, sampling, request.request_id))
        if own is not None:
            chunks = own.stream(chunks)
        elif plan is not None:
            chunks = toolcalls.with_tool_calls(chunks, plan)
        async with aclosing(chunks) as stream:
            async for chunk in stream:
                yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        if "generate" not in self.abilities:
            raise Unsupported(
                "this model was loaded for embeddings and cannot complete text", param="model"
            )
        _check_common(request)
        if request.logprobs or request.suffix or request.echo:
            name = "logprobs" if request.logprobs else "suffix" if request.suffix else "echo"
            raise Unsupported(f"{name} is not supported by the SGLang plugin", param=name)
        prompt = request.prompt
        if isinstance(prompt, list) and all(isinstance(p, int) for p in prompt):
            ids = [int(p) for p in prompt]
        elif isinstance(prompt, str) or len(prompt) == 1:
            text = prompt if isinstance(prompt, str) else str(prompt[0])
            ids = await anyio.to_thread.run_sync(self._encode, text, True)
        else:
            raise Unsupported(
                "the SGLang plugin completes one prompt per request; send each prompt on its own",
                param="prompt",
            )
        sampling = self._sampling(request, ids, "prompt")
        async with aclosing(self._generate(ids, sampling, request.request_id)) as outputs:
            async for text, finish, usage in outputs:
                chunk: Chunk = {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}
                if usage:
                    chunk["usage"] = usage
                yield chunk

    def _render(self, request: ChatCompletionRequest) -> str:
        """The conversation through the model's chat template, ready for the answer."""
        from jinja2 import TemplateError

        try:
            text = self.tokenizer.apply_chat_template(
                **template_arguments(request, ENGINE), add_generation_prompt=True, tokenize=False
            )
        except TemplateError as exc:
            raise InvalidRequest(
                f"the model's chat template refused these messages: {exc}", param="messages"
            ) from None
        return str(text)

    def _encode(self, text: str, special: bool) -> list[int]:
        # A chat template writes the special tokens (BOS...) itself; a raw prompt gets them here.
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _sampling(self, request: Request, ids: list[int], where: str) -> dict[str, Any]:
        """SGLang's sampling parameters for the request; a prompt or ``max_tokens`` that does not
        fit the context is a 400 before anything is queued."""
        limit = request.token_limit
        if len(ids) >= self.context_length:
            raise ContextLengthExceeded(
                f"the prompt has {len(ids)} tokens; this model's context is {self.context_length} "
                "tokens on SGLang: shorten it",
                param=where,
            )
        if limit is not None and len(ids) + limit > self.context_length:
            raise ContextLengthExceeded(
                f"the prompt ({len(ids)} tokens) plus max_tokens ({limit}) exceeds this model's "
                f"context of {self.context_length} tokens on SGLang: lower max_tokens or shorten "
                "the prompt",
                param="max_tokens",
            )
        sampling: dict[str, Any] = {"max_new_tokens": limit or self.context_length - len(ids)}
        for name in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty"):
            if (value := getattr(request, name)) is not None:
                sampling[name] = value
        for name in ("presence_penalty", "frequency_penalty", "ignore_eos"):
            if value := getattr(request, name):
                sampling[name] = value
        if request.stop_list:
            sampling["stop"] = request.stop_list
        if request.stop_token_ids:
            sampling["stop_token_ids"] = list(request.stop_token_ids)
        if request.logit_bias:
            sampling["logit_bias"] = dict(request.logit_bias)
        if request.seed is not None:
            sampling["sampling_seed"] = request.seed
        return sampling

    async def _generate(
        self, ids: list[int], sampling: dict[str, Any], request_id: str | None
    ) -> AsyncGenerator[tuple[str, str | None, dict[str, int] | None]]:
        """(new text, finish_reason, usage on the last item) as SGLang streams its output."""
        rid = request_id or uuid.uuid4().hex
        finished = False
        sent = 0
        try:
            stream = await self.engine.async_generate(
                input_ids=ids, sampling_params=sampling, stream=True, rid=rid
            )
        except ValueError as exc:  # SGLang's own checks of the request (length, parameters)
            raise _request_error(str(exc)) from None
        try:
            async for out in stream:
                meta = out["meta_info"]
                text = out["text"]
                delta, sent = text[sent:], len(text)
                finish = meta.get("finish_reason")
                if finish is None:
                    if delta:
                        yield delta, None, None
                    continue
                finished = True
                if finish.get("type") == "abort":
                    raise _abort_error(finish)
                usage = {
                    "prompt_tokens": int(meta["prompt_tokens"]),
                    "completion_tokens": int(meta["completion_tokens"]),
                    "total_tokens": int(meta["prompt_tokens"]) + int(meta["completion_tokens"]),
                }
                yield delta, _FINISH_REASONS.get(finish.get("type"), "stop"), usage
                return
        except ValueError as exc:
            raise _request_error(str(exc)) from None
        finally:
            if not finished:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()
                    # The client went away (or SGLang failed): free the request's slot and KV now.
                    self.engine.tokenizer_manager.abort_request(rid)
                    self.aborted += 1
                    log.info("SGLang aborted request %s (its stream was closed)", rid)

    async def _chat_chunks(
        self, outputs: AsyncGenerator[tuple[str, str | None, dict[str, int] | None]]
    ) -> AsyncGenerator[Chunk]:
        first = True
        async with aclosing(outputs) as stream:
            async for text, finish, usage in stream:
                delta: dict[str, Any] = {"role": "assistant"} if first else {}
                first = False
                if text or finish is None:
                    delta["content"] = text
                chunk: Chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if usage:
                    chunk["usage"] = usage
                yield chunk

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        if "embed" not in self.abilities:
            raise Unsupported(
                "this model was not loaded for embeddings; launch an embedding model "
                "(SGLang's is_embedding)",
                param="model",
            )
        if request.dimensions is not None:
            raise Unsupported(
                "dimensions is not supported by the SGLang plugin", param="dimensions"
            )
        given = request.input
        inputs: list[Any] = [given] if isinstance(given, str) else list(given)
        if all(isinstance(i, int) for i in inputs):
            inputs = [inputs]  # one prompt given as token ids
        texts = [
            i if isinstance(i, str) else self.tokenizer.decode(i, skip_special_tokens=False)
            for i in inputs
        ]
        try:
            results = await self.engine.async_encode(prompt=texts)
        except ValueError as exc:
            raise _request_error(str(exc)) from None
        if isinstance(results, dict):
            results = [results]
        prompt_tokens = sum(int(r["meta_info"]["prompt_tokens"]) for r in results)
        return {
            "data": [{"index": i, "embedding": r["embedding"]} for i, r in enumerate(results)],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    async def close(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            await anyio.to_thread.run_sync(engine.shutdown)
        if self.home is not None:
            self.home.release()
        if self.store is not None:
            self.store.close()


def _check_common(request: Request) -> None:
    if request.n != 1:
        raise Unsupported(
            "the SGLang plugin returns one choice per request (n=1); send n requests instead",
            param="n",
        )


def _response_schema(request: ChatCompletionRequest) -> str | None:
    """The JSON schema SGLang's grammar backend holds the output to, from ``response_format``."""
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return json.dumps({"type": "object"})
    if fmt.json_schema is None or fmt.json_schema.schema is None:
        raise InvalidRequest(
            "response_format json_schema needs json_schema.schema", param="response_format"
        )
    return json.dumps(fmt.json_schema.schema)


def _request_error(message: str) -> ModelyardError:
    lowered = message.lower()
    if "context length" in lowered or "longer than" in lowered or "too long" in lowered:
        return ContextLengthExceeded(f"SGLang: {message}")
    return InvalidRequest(f"SGLang rejected the request: {message}")


def _abort_error(finish: dict[str, Any]) -> ModelyardError:
    """SGLang ends a request it refuses (bad grammar, too long) as an abort with a status."""
    message = str(finish.get("message") or "aborted")
    status = finish.get("status_code")
    if isinstance(status, int) and 400 <= status < 500:
        return _request_error(message)
    return EngineError(f"SGLang aborted the request: {message}")
