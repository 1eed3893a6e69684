"""The echo "engine": what ``load_model`` returns, implementing ``modelyard.engine.LoadedModel``.

A token here is a whitespace-separated word, so usage counts are real counts of what was read and
written. A real engine would call its library (through ``anyio.to_thread.run_sync`` when the call
blocks) and translate its output into the same chunk dicts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import anyio
from modelyard.engine import Chunk, LoadedModel
from modelyard.errors import ContextLengthExceeded
from modelyard.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

_WORD = re.compile(r"\S+\s*")


def words(text: str) -> list[str]:
    """Words with their trailing whitespace, so that joining them gives the text back."""
    return _WORD.findall(text.strip())


class EchoModel(LoadedModel):
    abilities = ("chat", "generate")

    def _check_context(self, prompt_tokens: int, limit: int | None) -> None:
        needed = prompt_tokens + (limit or 0)
        if needed > self.context_length:
            raise ContextLengthExceeded(
                f"this request needs {needed} tokens ({prompt_tokens} in the prompt + {limit or 0} to generate) "
                f"but the model's context is {self.context_length}; shorten the messages or max_tokens",
                param="messages",
            )

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        # Validate before the stream starts, so a bad request is an error response, not a broken stream.
        prompt_tokens = sum(len(words(message.text())) for message in request.messages)
        self._check_context(prompt_tokens, request.token_limit)
        last_user = next((m.text() for m in reversed(request.messages) if m.role == "user"), "")
        return self._stream(words(last_user), prompt_tokens, request.token_limit, chat=True)

    def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        prompt = request.prompt
        text = prompt if isinstance(prompt, str) else " ".join(str(item) for item in prompt)
        prompt_tokens = len(words(text))
        self._check_context(prompt_tokens, request.token_limit)
        return self._stream(words(text), prompt_tokens, request.token_limit, chat=False)

    async def _stream(
        self, reply: list[str], prompt_tokens: int, limit: int | None, *, chat: bool
    ) -> AsyncIterator[Chunk]:
        if chat:
            yield {
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": ""},
                        "finish_reason": None,
                    }
                ]
            }
        emitted = reply if limit is None else reply[:limit]
        for word in emitted:
            # A checkpoint per token: lets the runner cancel this request between tokens.
            await anyio.sleep(0)
            yield _piece(word, chat=chat)
        finish = "length" if len(emitted) < len(reply) else "stop"
        last = _piece("", chat=chat)
        last["choices"][0]["finish_reason"] = finish
        last["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(emitted),
            "total_tokens": prompt_tokens + len(emitted),
        }
        yield last


def _piece(text: str, *, chat: bool) -> Chunk:
    if chat:
        return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
    return {"choices": [{"index": 0, "text": text, "finish_reason": None}]}


def vector(text: str, dimensions: int) -> list[float]:
    """A unit vector derived from the text's SHA-256: equal texts, equal vectors; different, different."""
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    raw = [(byte - 127.5) / 127.5 for byte in digest[:dimensions]]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class EchoEmbedding(LoadedModel):
    abilities = ("embed",)

    def __init__(self, *, dimensions: int, context_length: int) -> None:
        super().__init__(context_length=context_length)
        self.dimensions = dimensions

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        raw = request.input
        items: list[str]
        if isinstance(raw, str):
            items = [raw]
        elif raw and isinstance(raw[0], list):
            items = [" ".join(str(token) for token in tokens) for tokens in raw]  # type: ignore[union-attr]
        elif raw and isinstance(raw[0], int):
            items = [" ".join(str(token) for token in raw)]
        else:
            items = [str(item) for item in raw]
        counts = [len(words(item)) for item in items]
        for index, count in enumerate(counts):
            if count > self.context_length and not request.truncate:
                raise ContextLengthExceeded(
                    f"input {index} has {count} tokens, more than the model's {self.context_length}; "
                    "shorten it or pass truncate=true",
                    param="input",
                )
        items = ["".join(words(item)[: self.context_length]) for item in items]  # truncate=true
        dims = request.dimensions or self.dimensions
        data = [{"index": i, "embedding": vector(item, dims)} for i, item in enumerate(items)]
        total = sum(min(count, self.context_length) for count in counts)
        return {"data": data, "usage": {"prompt_tokens": total, "total_tokens": total}}
