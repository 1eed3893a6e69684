"""Chat and completion for causal LMs on transformers, served through the batching scheduler."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
from modelyard import toolcalls
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import ContextLengthExceeded, Unsupported
from modelyard.schemas import ChatCompletionRequest, CompletionRequest
from modelyard.specs import LLMFamily

from . import prompts
from .params import LLMParams, configure_torch, parse_params
from .sequence import ErrorEvent, Event, FinishEvent, Sequence, TextEvent

log = logging.getLogger(__name__)
_SAMPLING_DEFAULTS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def _ids(value: Any) -> set[int]:
    if value is None:
        return set()
    return {int(v) for v in value} if isinstance(value, list | tuple | set) else {int(value)}


class TransformersLLM(LoadedModel):
    def __init__(self, family: LLMFamily, params: dict[str, Any], path: Path) -> None:
        opts: LLMParams = parse_params(params, LLMParams)
        device, dtype, threads = configure_torch(opts)
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .scheduler import Scheduler

        remote = opts.trust_remote_code
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=remote)
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": remote}
        if opts.attn_implementation:
            kwargs["attn_implementation"] = opts.attn_implementation
        if device.type == "cuda" and opts.device == "auto":
            kwargs["device_map"] = "auto"  # accelerate spreads the layers over every visible GPU
        self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if "device_map" not in kwargs:
            self.model.to(device)
        self.model.eval()
        if family.chat_template:
            self.tokenizer.chat_template = family.chat_template

        config = self.model.config.get_text_config()
        limit = getattr(config, "max_position_embeddings", None) or family.context_length
        super().__init__(
            context_length=min(opts.context_length or family.context_length, limit),
            abilities=("chat", "generate") if self.tokenizer.chat_template else ("generate",),
        )
        gen = self.model.generation_config
        self.stop_token_ids = frozenset(
            _ids(gen.eos_token_id) | _ids(self.tokenizer.eos_token_id) | set(family.stop_token_ids)
        )
        self.family_stops = list(family.stop)
        self.tool_parser = family.tool_parser
        self.sampling_defaults = (
            {
                name: getattr(gen, name)
                for name in _SAMPLING_DEFAULTS
                if getattr(gen, name, None) is not None
            }
            if gen.do_sample
            else {}
        )
        pad = self.tokenizer.pad_token_id
        pad = pad if pad is not None else min(self.stop_token_ids, default=0)
        self.scheduler = Scheduler(
            self.model,
            device=self.model.device,
            pad_token_id=pad,
            max_num_seqs=opts.max_num_seqs,
            batch_wait_s=opts.batch_wait_ms / 1000,
            threads=threads,
        )
        if not opts.continuous_batching:
            self.scheduler.can_merge = False
        log.info(
            "loaded %s on %s (%s, %d threads, context %d, %s batching)",
            path,
            device,
            dtype,
            threads,
            self.context_length,
            "continuous" if self.scheduler.can_merge else "dynamic",
        )

    @property
    def batch_stats(self) -> dict[str, Any]:
        return self.scheduler.stats.as_dict()

    async def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        if "chat" not in self.abilities:
            raise Unsupported(
                "this model has no chat template; use /v1/completions", param="messages"
            )
        prompts.check_chat(request)
        tool_plan = toolcalls.plan(request, self.tool_parser)
        prompt = await anyio.to_thread.run_sync(prompts.render_chat, self.tokenizer, request)
        chunks = self._chat_chunks(prompt, request)
        if tool_plan is not None:
            chunks = toolcalls.with_tool_calls(chunks, tool_plan)
        async with aclosing(chunks) as stream:
            async for chunk in stream:
                yield chunk

    async def _chat_chunks(
        self, prompt: list[int], request: ChatCompletionRequest
    ) -> AsyncGenerator[Chunk]:
        started: set[int] = set()
        async for index, text, finish, usage in self._generate([prompt], request):
            delta: dict[str, Any] = {}
            if index not in started:
                started.add(index)
                delta["role"] = "assistant"
            if text or finish is None:
                delta["content"] = text
            chunk: Chunk = {"choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
            if usage:
                chunk["usage"] = usage
            yield chunk

    async def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        prompts.check_completion(request)
        prompt_ids = await anyio.to_thread.run_sync(
            prompts.completion_prompts, self.tokenizer, request
        )
        echoed: set[int] = set()
        async for index, text, finish, usage in self._generate(prompt_ids, request):
            if request.echo and index not in echoed:
                echoed.add(index)
                # decode() is typed str | list[str]; one sequence of ids decodes to one str.
                prompt = self.tokenizer.decode(
                    prompt_ids[index // request.n], skip_special_tokens=True
                )
                text = cast(str, prompt) + text
            chunk: Chunk = {"choices": [{"index": index, "text": text, "finish_reason": finish}]}
            if usage:
                chunk["usage"] = usage
            yield chunk

    def _sequences(
        self,
        prompt_ids: list[list[int]],
        request: ChatCompletionRequest | CompletionRequest,
        queue: asyncio.Queue[Event],
    ) -> list[Sequence]:
        limit = request.token_limit
        stop_ids = self.stop_token_ids if not request.ignore_eos else frozenset()
        stop_ids = stop_ids | frozenset(request.stop_token_ids or ())
        loop = asyncio.get_running_loop()
        sequences = []
        for p, ids in enumerate(prompt_ids):
            where = f"prompt {p}" if len(prompt_ids) > 1 else "the prompt"
            if len(ids) >= self.context_length:
                raise ContextLengthExceeded(
                    f"{where} has {len(ids)} tokens; this model's context is {self.context_length} tokens: shorten it",
                    param="messages" if isinstance(request, ChatCompletionRequest) else "prompt",
                )
            if limit and len(ids) + limit > self.context_length:
                raise ContextLengthExceeded(
                    f"{where} ({len(ids)} tokens) plus max_tokens ({limit}) exceeds this model's context of "
                    f"{self.context_length} tokens: lower max_tokens or shorten the prompt",
                    param="max_tokens",
                )
            for j in range(request.n):
                sequences.append(
                    Sequence(
                        index=p * request.n + j,
                        prompt_ids=ids,
                        max_new_tokens=limit or self.context_length - len(ids),
                        sampling=prompts.sampling_params(request, self.sampling_defaults, j),
                        stop_token_ids=stop_ids,
                        stops=[*request.stop_list, *self.family_stops],
                        tokenizer=self.tokenizer,
                        loop=loop,
                        queue=queue,
                    )
                )
        return sequences

    async def _generate(
        self, prompt_ids: list[list[int]], request: ChatCompletionRequest | CompletionRequest
    ) -> AsyncIterator[tuple[int, str, str | None, dict[str, int] | None]]:
        """(choice index, text, finish_reason, usage on the very last item) as tokens come."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        sequences = self._sequences(prompt_ids, request, queue)
        self.scheduler.submit(sequences)
        pending = {seq.index for seq in sequences}
        prompt_tokens = sum(len(ids) for ids in prompt_ids)
        completion_tokens = 0
        try:
            while pending:
                event = await queue.get()
                if isinstance(event, ErrorEvent):
                    raise event.error
                if isinstance(event, TextEvent):
                    yield event.index, event.text, None, None
                    continue
                assert isinstance(event, FinishEvent)
                pending.discard(event.index)
                completion_tokens += event.completion_tokens
                usage = None
                if not pending:
                    usage = {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    }
                yield event.index, event.text, event.reason, usage
        finally:
            # Normal end, error, or the client went away (aclose/cancel): free the rows.
            for seq in sequences:
                seq.cancelled = True
            self.scheduler.wake()

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self.scheduler.close)
        del self.model
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass


def load_llm(family: LLMFamily, params: dict[str, Any], path: Path) -> TransformersLLM:
    return TransformersLLM(family, params, path)
