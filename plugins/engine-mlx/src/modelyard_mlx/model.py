"""A model loaded with mlx-lm, serving chat and completions through the batching thread.

Per request, on the event loop: the chat template renders the prompt, each token from the engine
thread goes through the tokenizer's streaming detokenizer and the stop-string matcher, and the
chunks carry logprobs when asked and exact usage at the end. A stream closed early removes its
sequences from the batch (their KV cache is freed at the next step).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import EngineError, InvalidRequest, ModelyardError
from modelyard.schemas import ChatCompletionRequest, CompletionRequest
from modelyard.specs import LLMFamily
from modelyard.stops import StopMatcher
from modelyard.templating import template_arguments

from . import requests, tools
from .batching import BatchEngine, Sequence, Token

Request = ChatCompletionRequest | CompletionRequest


@dataclass
class _Output:
    """One choice's text as it streams: detokenizer, stop strings, token count."""

    detokenizer: Any
    stops: StopMatcher
    sequence: Sequence
    tokens: int = 0
    finished: bool = False
    offsets: list[int] = field(default_factory=list)


class MlxModel(LoadedModel):
    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        engine: BatchEngine,
        family: LLMFamily,
        *,
        context_length: int,
    ) -> None:
        chat = bool(tokenizer.has_chat_template or family.chat_template)
        abilities = tuple(a for a in family.model_ability if a in ("chat", "generate", "tools"))
        super().__init__(
            context_length=context_length,
            abilities=abilities if chat else ("generate",),
        )
        self.model = model
        self.tokenizer = tokenizer
        self.engine = engine
        self.family = family
        self.stop_ids = sorted(set(tokenizer.eos_token_ids) | set(family.stop_token_ids))

    @property
    def batch_stats(self) -> dict[str, Any]:
        return {"decode_steps_by_batch_size": dict(self.engine.stats.decode)}

    async def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        requests.check_request(request)
        plan = tools.plan(request, self.tokenizer, self.family.tool_parser)
        prompt = await anyio.to_thread.run_sync(self._render, request)
        chunks = self._generate([prompt], request, chat=True)
        if plan is not None:
            chunks = tools.toolcalls.with_tool_calls(chunks, plan)
        async with aclosing(chunks) as stream:
            async for chunk in stream:
                yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        requests.check_request(request)
        prompts = await anyio.to_thread.run_sync(self._encode, request)
        async with aclosing(self._generate(prompts, request, chat=False)) as stream:
            async for chunk in stream:
                yield chunk

    def _render(self, request: ChatCompletionRequest) -> list[int]:
        from jinja2 import TemplateError

        kwargs = template_arguments(request, "MLX")
        if self.family.chat_template:
            kwargs["chat_template"] = self.family.chat_template
        try:
            ids = self.tokenizer.apply_chat_template(**kwargs, add_generation_prompt=True)
        except TemplateError as exc:
            raise InvalidRequest(
                f"the model's chat template refused these messages: {exc}", param="messages"
            ) from None
        return list(ids)

    def _encode(self, request: CompletionRequest) -> list[list[int]]:
        prompt = request.prompt
        if isinstance(prompt, str):
            return [self.tokenizer.encode(prompt)]
        if all(isinstance(p, int) for p in prompt):
            vocab = len(self.tokenizer)
            if any(not 0 <= int(p) < vocab for p in prompt):
                raise InvalidRequest(f"prompt token ids must be in [0, {vocab})", param="prompt")
            return [[int(p) for p in prompt]]
        return [self.tokenizer.encode(str(p)) for p in prompt]

    def _sequences(self, prompts: list[list[int]], request: Request, push: Any) -> list[Sequence]:
        stop_ids = [] if request.ignore_eos else list(self.stop_ids)
        stop_ids += list(request.stop_token_ids or ())
        top = None
        if request.logprobs:
            top = (
                request.logprobs
                if isinstance(request.logprobs, int) and not isinstance(request.logprobs, bool)
                else getattr(request, "top_logprobs", None) or 0
            )
        sequences: list[Sequence] = []
        for p, prompt in enumerate(prompts):
            where = f"prompt {p}" if len(prompts) > 1 else "the prompt"
            budget = requests.token_budget(request, len(prompt), self.context_length, where)
            for _ in range(request.n):
                sampler, processors = requests.sampling(request)
                index = len(sequences)
                sequences.append(
                    Sequence(
                        prompt=prompt,
                        max_tokens=budget,
                        sampler=sampler,
                        processors=processors,
                        stop_ids=[[t] for t in stop_ids],
                        emit=functools.partial(push, index),
                        name=request.request_id or f"request-{id(request):x}:{index}",
                        top_logprobs=top,
                    )
                )
        return sequences

    async def _generate(
        self, prompts: list[list[int]], request: Request, *, chat: bool
    ) -> AsyncGenerator[Chunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, Token | BaseException]] = asyncio.Queue()

        def push(index: int, item: Token | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody listens
                loop.call_soon_threadsafe(queue.put_nowait, (index, item))

        sequences = self._sequences(prompts, request, push)
        stops = [*request.stop_list, *self.family.stop]
        outputs = [
            _Output(self.tokenizer.detokenizer, StopMatcher(stops), seq) for seq in sequences
        ]
        echo = isinstance(request, CompletionRequest) and request.echo
        self.engine.submit(sequences)
        pending = len(outputs)
        try:
            while pending:
                index, item = await queue.get()
                if isinstance(item, BaseException):
                    if isinstance(item, ModelyardError):
                        raise item
                    raise EngineError(f"MLX failed: {type(item).__name__}: {item}") from item
                out = outputs[index]
                if out.finished:
                    continue
                chunk = self._chunk(index, out, item, chat=chat, echo=echo)
                if out.finished:
                    pending -= 1
                    if not pending:
                        prompt_tokens = sum(len(p) for p in prompts) * request.n
                        completion = sum(o.tokens for o in outputs)
                        chunk["usage"] = {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion,
                            "total_tokens": prompt_tokens + completion,
                        }
                if chunk["choices"]:
                    yield chunk
        finally:
            # Normal end, error, or the client went away: free what is still generating.
            self.engine.cancel([o.sequence for o in outputs])

    def _chunk(self, index: int, out: _Output, token: Token, *, chat: bool, echo: bool) -> Chunk:
        first = out.tokens == 0
        out.tokens += 1
        finish = token.finish_reason
        text = ""
        if finish != "stop":  # a stop token (EOS...) ends the answer without text of its own
            out.detokenizer.add_token(token.token)
            text = out.detokenizer.last_segment
        if finish is not None:
            out.detokenizer.finalize()
            text += out.detokenizer.last_segment
        text, stopped = out.stops.feed(text)
        if stopped:
            finish = "stop"
            self.engine.cancel([out.sequence])
        elif finish is not None:
            text += out.stops.flush()
        out.finished = finish is not None
        choice: dict[str, Any] = {"index": index, "finish_reason": finish}
        if chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text or finish is None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            if first and echo:
                text = self.tokenizer.decode(out.sequence.prompt) + text
            choice["text"] = text
        if token.logprob is not None:
            choice["logprobs"] = self._logprobs(token, chat=chat)
        return {"choices": [choice]}

    def _logprobs(self, token: Token, *, chat: bool) -> dict[str, Any]:
        text = self.tokenizer.decode([token.token])
        if not chat:
            return {
                "tokens": [text],
                "token_logprobs": [token.logprob],
                "top_logprobs": [{self.tokenizer.decode([t]): lp for t, lp in token.top}],
            }
        top = []
        for t, lp in token.top:
            alt = self.tokenizer.decode([t])
            top.append({"token": alt, "logprob": lp, "bytes": list(alt.encode())})
        entry = {"token": text, "logprob": token.logprob, "bytes": list(text.encode())}
        return {"content": [{**entry, "top_logprobs": top}]}

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.engine.close)
