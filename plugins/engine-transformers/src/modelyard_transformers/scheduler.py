"""Continuous batching for a causal LM: one thread runs a step loop over all live sequences.

Every step (1) drops finished and cancelled rows from the batch, (2) prefills the requests that
arrived meanwhile together, in one left-padded forward pass, and merges their KV cache into the
running one, (3) decodes one token for every row in one forward pass. Rows live in one batch-wide
``DynamicCache`` whose time axis is left-padded; the 2-D attention mask marks the padding and
``position_ids`` count each row's real tokens, so rows of different lengths share every step.

Models whose cache is not plain full attention (sliding-window or linear-attention layers) cannot
have rows merged that way; for them requests that arrive while a batch runs wait for it to
finish, then start together (dynamic batching).
"""

from __future__ import annotations

import collections
import inspect
import logging
import threading
from collections import Counter
from typing import Any

import torch
import torch.nn.functional as F
from modelyard.errors import EngineError, Unavailable

from .sequence import Sequence

log = logging.getLogger(__name__)


class BatchStats:
    """How requests shared forward passes: counts of steps by batch size (what tests assert on)."""

    def __init__(self) -> None:
        self.decode: Counter[int] = Counter()
        self.prefill: Counter[int] = Counter()

    def as_dict(self) -> dict[str, Any]:
        return {
            "decode_steps_by_batch_size": dict(sorted(self.decode.items())),
            "prefill_batches_by_size": dict(sorted(self.prefill.items())),
            "max_decode_batch": max(self.decode, default=0),
        }


class Scheduler:
    def __init__(
        self,
        model: Any,
        *,
        device: torch.device,
        pad_token_id: int,
        max_num_seqs: int,
        batch_wait_s: float,
        threads: int | None,
    ) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self.model = model
        self.device = device
        self.pad_token_id = pad_token_id
        self.max_num_seqs = max_num_seqs
        self.batch_wait_s = batch_wait_s
        self.threads = threads
        self._new_cache = lambda: DynamicCache(config=model.config)
        probe = self._new_cache()
        # Lazily built caches (no config layers) are plain DynamicLayers too.
        self.can_merge = all(type(layer) is DynamicLayer for layer in probe.layers)
        # transformers 5.24 renamed forward's `past_key_values` to `cache` (the old name warns);
        # models whose code predates it (remote code) still take the old one.
        forward_params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"
        self.stats = BatchStats()
        self._pending: collections.deque[Sequence] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._rows: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._thread = threading.Thread(
            target=self._run, name="modelyard-transformers-batch", daemon=True
        )
        self._thread.start()

    # -- called from the event loop ---------------------------------------------------------
    def submit(self, sequences: list[Sequence]) -> None:
        with self._cv:
            if self._closed:
                raise Unavailable(
                    "this model is shutting down; send the request again once it is relaunched"
                )
            self._pending.extend(sequences)
            self._cv.notify()

    def wake(self) -> None:
        """Let the loop notice a cancellation promptly even when it is idle."""
        with self._cv:
            self._cv.notify()

    def active(self) -> int:
        """Rows in the batch (a cancelled one counts until the loop drops it) plus live waiting requests."""
        with self._cv:
            return len(self._rows) + sum(not seq.done for seq in self._pending)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join()

    # -- the loop thread ---------------------------------------------------------------------
    def _take(self) -> list[Sequence] | None:
        """Wait for work; return the sequences to prefill now (possibly none), or None to exit."""
        with self._cv:
            while not self._closed and not self._pending and not self._rows:
                self._cv.wait()
            if self._closed:
                return None
            if not self._rows and self.batch_wait_s > 0:
                # Idle until now: give requests sent together a moment to share one prefill.
                self._cv.wait_for(
                    lambda: self._closed or len(self._pending) >= self.max_num_seqs,
                    self.batch_wait_s,
                )
            joiners: list[Sequence] = []
            if self.can_merge or not self._rows:
                while self._pending and len(self._rows) + len(joiners) < self.max_num_seqs:
                    seq = self._pending.popleft()
                    if not seq.done:
                        joiners.append(seq)
            return joiners

    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while (joiners := self._take()) is not None:
            try:
                with torch.inference_mode():
                    self._drop_done()
                    if joiners:
                        self._prefill(joiners)
                    if self._rows:
                        self._decode()
                    self._drop_done()
            except Exception as exc:  # a failed step fails its rows, not the engine
                log.exception("generation step failed")
                error = EngineError(f"generation failed: {type(exc).__name__}: {exc}")
                for seq in [*self._rows, *joiners]:
                    if not seq.done:
                        seq.fail(error)
                self._rows, self._cache, self._mask = [], None, None
        with self._cv:
            leftovers = [*self._rows, *self._pending]
        for seq in leftovers:
            if not seq.done:
                seq.fail(Unavailable("the model was terminated while this request was running"))

    def _prefill(self, joiners: list[Sequence]) -> None:
        width = max(len(seq.prompt_ids) for seq in joiners)
        ids = torch.full((len(joiners), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(joiners), width), dtype=torch.long)
        for row, seq in enumerate(joiners):
            ids[row, width - len(seq.prompt_ids) :] = torch.tensor(seq.prompt_ids)
            mask[row, width - len(seq.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        cache = self._new_cache()
        logits = self._forward(ids, mask, (mask.cumsum(-1) - 1).clamp(min=0), cache)
        self.stats.prefill[len(joiners)] += 1
        for row, seq in enumerate(joiners):
            seq.sample(logits[row])
        if self._rows:
            self._merge(cache, mask)
        else:
            self._cache, self._mask = cache, mask
        self._rows.extend(joiners)

    def _merge(self, cache: Any, mask: torch.Tensor) -> None:
        assert self._mask is not None
        width = max(self._mask.shape[1], mask.shape[1])

        def left_pad(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = width - t.shape[-dim_from_end]
            if missing == 0:
                return t
            pad = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return F.pad(t, pad)

        for mine, theirs in zip(self._cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([left_pad(mine.keys, 2), left_pad(theirs.keys, 2)])
            mine.values = torch.cat([left_pad(mine.values, 2), left_pad(theirs.values, 2)])
        self._mask = torch.cat([left_pad(self._mask, 1), left_pad(mask, 1)])

    def _decode(self) -> None:
        assert self._mask is not None
        live = [seq for seq in self._rows if not seq.done]
        if len(live) != len(self._rows):
            self._drop_done()
            live = self._rows
            if not live:
                return
        ids = torch.tensor([[seq.next_token] for seq in live], device=self.device)
        positions = self._mask.sum(-1, keepdim=True)
        self._mask = torch.cat([self._mask, torch.ones_like(positions)], dim=-1)
        logits = self._forward(ids, self._mask, positions, self._cache)
        self.stats.decode[len(live)] += 1
        # max_new_tokens was capped to the context left at submit time, so no row outgrows it.
        for row, seq in enumerate(live):
            seq.sample(logits[row])

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any
    ) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{self._cache_arg: cache},
        )
        return out.logits[:, -1, :]

    def _drop_done(self) -> None:
        """Remove finished and cancelled rows from the batch, and padding no row needs any more."""
        keep = [i for i, seq in enumerate(self._rows) if not seq.done]
        if len(keep) == len(self._rows):
            return
        self._rows = [self._rows[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        assert self._mask is not None
        index = torch.tensor(keep, device=self._mask.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        if self.can_merge:
            first = int(self._mask.any(0).nonzero()[0])
            if first:
                for layer in self._cache.layers:
                    layer.keys = layer.keys[..., first:, :]
                    layer.values = layer.values[..., first:, :]
                self._mask = self._mask[:, first:]
