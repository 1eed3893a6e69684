"""Continuous batching: one thread owns the model and mlx-lm's ``BatchGenerator``.

Requests join and leave between decode steps: ``submit`` queues sequences and the thread inserts them
(they are prefilled, then decoded with the sequences already running); ``cancel`` removes a
sequence's uid, which frees its KV cache at once. Each sequence carries its own sampler and logits
processors, so requests with different parameters share a batch. The thread hands every token to
its sequence's ``emit`` (which crosses into the event loop); detokenizing and stop strings happen
there, per request.

Prompt caching, as mlx_lm.server does it: a finished sequence's KV cache is kept (LRU, mlx-lm's
``LRUPromptCache``) under its tokens, and a new prompt that shares a prefix with one starts from
a copy of it, so a conversation's next turn or a repeated system prompt is not prefilled again.

``stats`` counts decode steps by batch size, and a change of the batch's composition is logged
(``decoding N sequences together: [...]``), so sharing can be checked from outside the process.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("modelyard.mlx")
_MODEL_KEY = "model"  # one model per engine: the prompt cache's model key is a constant


@dataclass(frozen=True)
class Token:
    """One generated token: its log-probability and the top alternatives when asked for."""

    token: int
    finish_reason: str | None
    logprob: float | None = None
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Sequence:
    prompt: list[int]
    max_tokens: int
    sampler: Any
    processors: list[Any]
    stop_ids: list[list[int]]  # token sequences that end it (EOS, stop_token_ids)
    emit: Callable[[Token | BaseException], None]
    name: str = ""  # how the log names it (the request id)
    top_logprobs: int | None = None  # None: no logprobs
    uid: int | None = field(default=None, repr=False)


@dataclass
class BatchStats:
    decode: Counter[int] = field(default_factory=Counter)  # batch size -> decode steps
    composition: tuple[str, ...] = ()

    def record(self, names: tuple[str, ...]) -> None:
        self.decode[len(names)] += 1
        if names != self.composition:
            self.composition = names
            log.info("decoding %d sequences together: %r", len(names), list(names))


class BatchEngine:
    def __init__(
        self,
        model: Any,
        *,
        max_num_seqs: int,
        prefill_batch_size: int,
        prefill_step_size: int,
        max_kv_size: int | None,
        prompt_cache_size: int = 10,
    ) -> None:
        from mlx_lm.generate import BatchGenerator
        from mlx_lm.models.cache import LRUPromptCache

        self.generator = BatchGenerator(
            model,
            completion_batch_size=max_num_seqs,
            prefill_batch_size=min(prefill_batch_size, max_num_seqs),
            prefill_step_size=prefill_step_size,
            max_kv_size=max_kv_size,
        )
        self.prompt_cache = LRUPromptCache(prompt_cache_size) if prompt_cache_size > 0 else None
        self.stats = BatchStats()
        self._wake = threading.Condition()
        self._incoming: list[Sequence] = []
        self._leaving: list[Sequence] = []
        self._running: dict[int, Sequence] = {}
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="mlx-batch", daemon=True)
        self._thread.start()

    def submit(self, sequences: list[Sequence]) -> None:
        with self._wake:
            if self._closed:
                raise RuntimeError("the MLX engine is closed")
            self._incoming.extend(sequences)
            self._wake.notify()

    def cancel(self, sequences: list[Sequence]) -> None:
        with self._wake:
            self._leaving.extend(sequences)
            self._wake.notify()

    def active(self) -> int:
        """Sequences the generator holds (queued, prefilling or decoding)."""
        with self._wake:
            return len(self._running) + len(self._incoming)

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._thread.join()
        self.generator.close()

    def _take(self) -> tuple[list[Sequence], list[Sequence]] | None:
        with self._wake:
            while not (self._incoming or self._leaving or self._running or self._closed):
                self._wake.wait()
            if self._closed:
                return None
            taken = self._incoming, self._leaving
            self._incoming, self._leaving = [], []
            return taken

    def _loop(self) -> None:
        while (taken := self._take()) is not None:
            incoming, leaving = taken
            try:
                self._remove(leaving)
                self._insert(incoming)
                if self._running:
                    self._step()
            except Exception as exc:  # an engine failure ends every request it holds
                log.exception("MLX generation failed")
                failed = list(self._running.values())
                self._remove(failed)
                for sequence in failed:
                    sequence.emit(exc)

    def _remove(self, sequences: list[Sequence]) -> None:
        # A set: a sequence may be cancelled twice (its stop string, then its stream's end).
        uids = {s.uid for s in sequences if s.uid is not None and s.uid in self._running}
        if uids:
            self.generator.remove(sorted(uids))
            for uid in uids:
                del self._running[uid]

    def _insert(self, sequences: list[Sequence]) -> None:
        if not sequences:
            return
        from mlx_lm.generate import StopSequences

        starts = [self._cached_start(s.prompt) for s in sequences]
        uids = self.generator.insert(
            [rest for _, rest in starts],
            max_tokens=[s.max_tokens for s in sequences],
            caches=[cache for cache, _ in starts],
            all_tokens=[
                s.prompt[: len(s.prompt) - len(rest)]
                for s, (_, rest) in zip(sequences, starts, strict=True)
            ],
            samplers=[s.sampler for s in sequences],
            logits_processors=[s.processors for s in sequences],
            stop_sequences=[StopSequences(s.stop_ids or None) for s in sequences],
        )
        for uid, sequence in zip(uids, sequences, strict=True):
            sequence.uid = uid
            self._running[uid] = sequence

    def _cached_start(self, prompt: list[int]) -> tuple[Any, list[int]]:
        """(a KV cache holding the longest cached prefix of ``prompt``, the tokens after it), or
        (None, prompt) when nothing is cached."""
        if self.prompt_cache is None:
            return None, prompt
        cache, rest = self.prompt_cache.fetch_nearest_cache(_MODEL_KEY, prompt)
        if cache is None or not rest:  # generation needs at least one prompt token to start from
            return None, prompt
        return cache, list(rest)

    def _step(self) -> None:
        responses = self.generator.next_generated()
        self.stats.record(
            tuple(self._running[r.uid].name for r in responses if r.uid in self._running)
        )
        for response in responses:
            sequence = self._running.get(response.uid)
            if sequence is None:
                continue
            sequence.emit(_token(response, sequence.top_logprobs))
            if response.finish_reason is not None:
                del self._running[response.uid]
                if self.prompt_cache is not None and response.prompt_cache is not None:
                    tokens = list(response.all_tokens)
                    self.prompt_cache.insert_cache(_MODEL_KEY, tokens, response.prompt_cache)


def _token(response: Any, top_logprobs: int | None) -> Token:
    if top_logprobs is None:
        return Token(response.token, response.finish_reason)
    import mlx.core as mx

    logprobs = response.logprobs
    top: tuple[tuple[int, float], ...] = ()
    if top_logprobs > 0:
        ids = mx.argpartition(-logprobs, kth=top_logprobs - 1)[:top_logprobs]
        values = logprobs[ids].tolist()
        top = tuple(sorted(zip(ids.tolist(), values, strict=True), key=lambda p: -p[1]))
    return Token(
        response.token, response.finish_reason, float(logprobs[response.token].item()), top
    )
