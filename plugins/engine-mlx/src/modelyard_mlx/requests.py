"""OpenAI request fields → mlx-lm's per-sequence sampler, logits processors and limits.

Refused with a 400 naming the field: what mlx-lm's batched generation cannot honour (a per-request
``seed``: its random state is shared by the whole batch; ``response_format`` and forced tool calls:
no constrained decoding; ``suffix``).
"""

from __future__ import annotations

import functools
from typing import Any

from modelyard.errors import ContextLengthExceeded, Unsupported
from modelyard.schemas import ChatCompletionRequest, CompletionRequest

Request = ChatCompletionRequest | CompletionRequest


def check_request(request: Request) -> None:
    unsupported: list[str] = []
    if request.seed is not None:
        unsupported.append("seed (mlx-lm's batched generation shares one random state)")
    if isinstance(request, ChatCompletionRequest):
        if request.response_format is not None and request.response_format.type != "text":
            unsupported.append("response_format (no constrained decoding)")
        if request.tools and (
            request.tool_choice == "required" or isinstance(request.tool_choice, dict)
        ):
            unsupported.append("tool_choice forcing a call (no constrained decoding; use 'auto')")
    elif request.suffix:
        unsupported.append("suffix (no fill-in-the-middle)")
    if unsupported:
        raise Unsupported(
            f"the MLX engine does not support: {'; '.join(unsupported)}; leave "
            f"{'them' if len(unsupported) > 1 else 'it'} out or launch the model on another engine",
            param=unsupported[0].split(" ")[0],
        )


def token_budget(request: Request, prompt_tokens: int, context_length: int, where: str) -> int:
    """The max_tokens a sequence may generate: the request's, within the context length."""
    if prompt_tokens >= context_length:
        raise ContextLengthExceeded(
            f"{where} has {prompt_tokens} tokens; this model's context length is {context_length} "
            "tokens (prompt and answer together): shorten it, or relaunch with a larger "
            "context_length if the model supports it",
            param="messages" if isinstance(request, ChatCompletionRequest) else "prompt",
        )
    room = context_length - prompt_tokens
    limit = request.token_limit
    if limit is not None and limit > room:
        raise ContextLengthExceeded(
            f"{where} has {prompt_tokens} tokens and max_tokens={limit} asks for more: this model's "
            f"context length is {context_length} tokens, so at most {room} can be generated; "
            "ask for fewer tokens or shorten the prompt",
            param="max_tokens",
        )
    return limit if limit is not None else room


def sampling(request: Request) -> tuple[Any, list[Any]]:
    """(sampler, logits processors) for one sequence of ``request``."""
    from mlx_lm.sample_utils import make_logits_processors

    bias = request.token_bias()
    temperature = 1.0 if request.temperature is None else request.temperature
    top_p = request.top_p if request.top_p is not None and request.top_p < 1 else 0.0
    sampler = _sampler(temperature, top_p, request.min_p or 0.0, max(request.top_k or 0, 0))
    processors = make_logits_processors(
        logit_bias=bias or None,
        repetition_penalty=request.repetition_penalty,
        presence_penalty=request.presence_penalty or None,
        frequency_penalty=request.frequency_penalty or None,
    )
    return sampler, processors


@functools.lru_cache(maxsize=64)
def _sampler(temperature: float, top_p: float, min_p: float, top_k: int) -> Any:
    """One sampler object per setting: when every row of a batch has the same one, mlx-lm samples
    the whole batch in one call instead of row by row."""
    from mlx_lm.sample_utils import make_sampler

    return make_sampler(temp=temperature, top_p=top_p, min_p=min_p, top_k=top_k)
