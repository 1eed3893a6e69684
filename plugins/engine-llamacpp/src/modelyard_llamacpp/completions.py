"""Legacy /v1/completions on llama.cpp: what it lacks, and its answers in OpenAI's legacy shape.

llama.cpp takes a list of prompts and ``n`` itself (choice ``i`` belongs to prompt ``i // n``), but it
ignores ``echo`` and ``suffix`` and returns logprobs in the chat shape (``{"content": [...]}``).
``echo`` is done here for text prompts; ``suffix`` and the rest are refused with a 400 that says what
to send instead; logprobs are turned into ``tokens``/``token_logprobs``/``top_logprobs``/``text_offset``.
"""

from __future__ import annotations

from typing import Any

from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import CompletionRequest

Chunk = dict[str, Any]


def check(request: CompletionRequest) -> None:
    if request.suffix:
        raise Unsupported(
            "suffix (fill-in-the-middle) is not supported by the llama.cpp engine; "
            "leave it out and put the text before the gap in prompt",
            param="suffix",
        )
    if request.echo and request.logprobs is not None:
        raise Unsupported(
            "echo with logprobs (the prompt's own logprobs) is not supported by the llama.cpp engine; "
            "drop one of them",
            param="echo",
        )
    if request.n > 1 and _has_empty_prompt(request):
        # Seen with xllamacpp: the extra choices of an empty prompt never finish, and the slots
        # they hold stay taken, so every later request with n > 1 waits forever.
        raise InvalidRequest(
            f"an empty prompt with n={request.n} is refused: llama.cpp never finishes it; "
            "send a non-empty prompt, or n=1",
            param="prompt",
        )
    if request.echo and not _text_prompts(request):
        raise Unsupported(
            "echo needs text prompts on the llama.cpp engine, not token ids", param="echo"
        )


def _has_empty_prompt(request: CompletionRequest) -> bool:
    prompt = request.prompt
    return prompt == "" or (isinstance(prompt, list) and "" in prompt)


def _text_prompts(request: CompletionRequest) -> list[str]:
    prompt = request.prompt
    if isinstance(prompt, str):
        return [prompt]
    return (
        [p for p in prompt if isinstance(p, str)] if all(isinstance(p, str) for p in prompt) else []
    )


class LegacyShape:
    """Rewrites one request's chunks: the prompt echoed before each choice, logprobs in the legacy shape."""

    def __init__(self, request: CompletionRequest) -> None:
        self.prompts = _text_prompts(request)
        self.n = request.n
        self.echo = request.echo
        self.started: set[int] = set()
        self.offsets: dict[int, int] = {}  # per choice: where the next token's text starts

    def _prompt_of(self, index: int) -> str:
        position = index // self.n
        return self.prompts[position] if position < len(self.prompts) else ""

    def rewrite(self, chunk: Chunk) -> None:
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            if self.echo and index not in self.started:
                choice["text"] = self._prompt_of(index) + (choice.get("text") or "")
            self.started.add(index)
            logprobs = choice.get("logprobs")
            if isinstance(logprobs, dict) and "content" in logprobs:
                choice["logprobs"] = self._legacy(index, logprobs.get("content") or [])

    def _legacy(self, index: int, entries: list[dict[str, Any]]) -> dict[str, list[Any]]:
        # OpenAI's text_offset counts characters from the start of the prompt.
        offset = self.offsets.get(index, len(self._prompt_of(index)))
        legacy: dict[str, list[Any]] = {
            "tokens": [],
            "token_logprobs": [],
            "top_logprobs": [],
            "text_offset": [],
        }
        for entry in entries:
            token = entry.get("token", "")
            legacy["tokens"].append(token)
            legacy["token_logprobs"].append(entry.get("logprob"))
            legacy["top_logprobs"].append(
                {
                    top.get("token", ""): top.get("logprob")
                    for top in entry.get("top_logprobs") or ()
                }
            )
            legacy["text_offset"].append(offset)
            offset += len(token)
        self.offsets[index] = offset
        return legacy


class UsageSum:
    """One usage for a whole request: every prompt's tokens once, every choice's completion summed.

    llama.cpp ends each choice with its own usage: with ``n`` choices per prompt, the prompt's count
    repeats in each of its choices."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.prompt_tokens: dict[int, int] = {}
        self.completion_tokens = 0

    def add(self, usage: dict[str, Any], choice_index: int) -> None:
        position = choice_index // self.n
        prompt = int(usage.get("prompt_tokens", 0))
        self.prompt_tokens[position] = max(prompt, self.prompt_tokens.get(position, 0))
        self.completion_tokens += int(usage.get("completion_tokens", 0))

    def as_dict(self) -> dict[str, int]:
        prompt = sum(self.prompt_tokens.values())
        return {
            "prompt_tokens": prompt,
            "completion_tokens": self.completion_tokens,
            "total_tokens": prompt + self.completion_tokens,
        }
