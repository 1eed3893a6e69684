"""One generation in flight: its prompt, limits, sampling state and the events it sends back.

The scheduler thread advances sequences; the request's coroutine reads their events from an
asyncio queue. Events cross threads through the loop's ``LoopHandoff`` only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from modelyard.loop_handoff import handoff_for

from .sampling import SamplingParams, sample_next
from .text import Detokenizer, StopMatcher

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True)
class TextEvent:
    index: int
    text: str


@dataclass(frozen=True)
class FinishEvent:
    index: int
    reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    text: str = ""  # last text released by the finish (held-back tail)


@dataclass(frozen=True)
class ErrorEvent:
    index: int
    error: BaseException


Event = TextEvent | FinishEvent | ErrorEvent


@dataclass(eq=False)
class Sequence:
    """Created on the event loop, then owned by the scheduler thread until it finishes."""

    index: int
    prompt_ids: list[int]
    max_new_tokens: int
    sampling: SamplingParams
    stop_token_ids: frozenset[int]
    stops: list[str]
    tokenizer: Any
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Event]
    generated: list[int] = field(default_factory=list)
    finished: bool = False
    # Set from the event loop when the client goes away; the scheduler drops the row next step.
    cancelled: bool = False
    next_token: int | None = None

    def __post_init__(self) -> None:
        self._prompt = torch.tensor(self.prompt_ids, dtype=torch.long)
        self._detok = Detokenizer(self.tokenizer)
        self._stop = StopMatcher(self.stops)
        self._generator: torch.Generator | None = None
        # Made on the loop (here), used from the scheduler thread: one wakeup per decoding step
        # for every row's event instead of one per event.
        self._handoff = handoff_for(self.loop)

    @property
    def done(self) -> bool:
        return self.finished or self.cancelled

    def _send(self, event: Event) -> None:
        try:
            self._handoff.post(self.queue.put_nowait, event)
        except RuntimeError:  # the event loop is gone: nobody is listening any more
            self.cancelled = True

    def sample(self, logits: torch.Tensor) -> None:
        """Pick the next token from this row's logits and stream what it adds."""
        if self._generator is None and self.sampling.seed is not None:
            self._generator = self.sampling.generator(logits.device)
        token = sample_next(
            logits,
            self.sampling,
            prompt=self._prompt,
            generated=self.generated,
            generator=self._generator,
        )
        self.generated.append(token)
        self.next_token = token
        if token in self.stop_token_ids:
            self.end("stop")
            return
        text, stopped = self._stop.feed(self._detok.add(token))
        if stopped:
            self._finish("stop", text)
        elif len(self.generated) >= self.max_new_tokens:
            self.end("length", text)
        elif text:
            self._send(TextEvent(self.index, text))

    def end(self, reason: FinishReason, text: str = "") -> None:
        """A natural end (stop token, length, context full): release the text still held back,
        unless it completes a stop string."""
        tail, stopped = self._stop.feed(self._detok.flush())
        text += tail
        if not stopped:
            text += self._stop.flush()
        self._finish("stop" if stopped else reason, text)

    def _finish(self, reason: FinishReason, text: str) -> None:
        self.finished = True
        self._send(FinishEvent(self.index, reason, len(self.prompt_ids), len(self.generated), text))

    def fail(self, error: BaseException) -> None:
        self.finished = True
        self._send(ErrorEvent(self.index, error))
