"""Choosing the next token for one sequence from its logits row.

Each row of a batch carries its own request's parameters, so sampling runs per row: the forward
pass is the expensive part and is shared; this is a few vector operations over the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 or less: no top-k cut
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    def generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        return torch.Generator(device=device).manual_seed(self.seed)


def _apply_penalties(
    logits: torch.Tensor, params: SamplingParams, prompt: torch.Tensor, generated: list[int]
) -> None:
    if params.repetition_penalty != 1.0:
        # Transformers' rule, over prompt and output: shrink the logits of tokens already seen.
        seen = (
            torch.cat([prompt, torch.tensor(generated, dtype=torch.long)])
            .unique()
            .to(logits.device)
        )
        chosen = logits[seen]
        logits[seen] = torch.where(
            chosen > 0, chosen / params.repetition_penalty, chosen * params.repetition_penalty
        )
    if generated and (params.presence_penalty or params.frequency_penalty):
        # OpenAI's rule, over the output only.
        ids, counts = torch.tensor(generated, dtype=torch.long).unique(return_counts=True)
        penalty = params.presence_penalty + params.frequency_penalty * counts.to(logits.dtype)
        logits[ids.to(logits.device)] -= penalty.to(logits.device)


def sample_next(
    logits: torch.Tensor,
    params: SamplingParams,
    *,
    prompt: torch.Tensor,
    generated: list[int],
    generator: torch.Generator | None,
) -> int:
    """The next token id from a 1-D logits row (any dtype; computed in float32)."""
    logits = logits.float().clone()
    for token, bias in params.logit_bias.items():
        if 0 <= token < logits.shape[-1]:
            logits[token] += bias
    _apply_penalties(logits, params, prompt, generated)
    if params.greedy:
        return int(logits.argmax())
    logits /= params.temperature
    if 0 < params.top_k < logits.shape[-1]:
        kth = torch.topk(logits, params.top_k).values[-1]
        logits[logits < kth] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if params.min_p > 0:
        probs[probs < params.min_p * probs.max()] = 0
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        # Keep the smallest prefix whose mass reaches top_p (the first token always stays).
        outside = sorted_probs.cumsum(-1) - sorted_probs > params.top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))
