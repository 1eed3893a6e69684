"""The serving surface of a loaded model: what ``load_model`` returns and the runner calls.

Chat and completion are always async streams of OpenAI-shaped chunk dicts; the core turns them
into SSE events, or folds them into one response when the client did not ask to stream. The core
fills in ``id``, ``object``, ``created`` and ``model``, so engines may leave those out.

Chunk contract (chat): ``{"choices": [{"index": 0, "delta": {...}, "finish_reason": None}]}``;
(completion): ``{"choices": [{"index": 0, "text": "...", "finish_reason": None}]}``. The last chunk
a stream yields carries ``"usage": {"prompt_tokens", "completion_tokens", "total_tokens"}`` with real
counts, whether or not the client asked for usage; the core drops it when not asked.

Concurrency belongs to the engine: the runner calls these methods concurrently, one task per
request, and never serialises them. Blocking engine calls must leave the event loop
(``anyio.to_thread.run_sync``). Closing a stream early (``aclose``, task cancellation) means the
client went away: the engine must stop generating for that request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .errors import Unsupported
from .schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from .specs import Ability

Chunk = dict[str, Any]


class LoadedModel:
    """Base class for a loaded model. Override the methods for the abilities the engine has.

    ``abilities`` lists what this loaded model can do (a chat model loaded without embeddings does
    not list "embed"); ``context_length`` is the number of tokens one request may use in total.
    """

    abilities: tuple[Ability, ...] = ()

    def __init__(
        self, *, context_length: int, abilities: tuple[Ability, ...] | None = None
    ) -> None:
        self.context_length = context_length
        if abilities is not None:
            self.abilities = abilities

    def chat(self, request: ChatCompletionRequest) -> AsyncIterator[Chunk]:
        raise Unsupported(
            f"this model cannot chat; it can: {', '.join(self.abilities)}", param="model"
        )

    def complete(self, request: CompletionRequest) -> AsyncIterator[Chunk]:
        raise Unsupported(
            f"this model cannot complete text; it can: {', '.join(self.abilities)}", param="model"
        )

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        """``{"data": [{"index": i, "embedding": [...]}, ...], "usage": {"prompt_tokens", "total_tokens"}}``,
        plus ``"truncated_inputs": [i, ...]`` when ``request.truncate`` made the engine cut inputs."""
        raise Unsupported(
            f"this model cannot embed; it can: {', '.join(self.abilities)}", param="model"
        )

    async def rerank(self, request: RerankRequest) -> dict[str, Any]:
        """``{"results": [{"index": i, "relevance_score": s}, ...], "usage": {"input_tokens": n}}``,
        one result per document in request order; the core sorts, cuts to ``top_n`` and attaches
        documents. ``"truncated_documents": [i, ...]`` reports documents cut to the model's limit."""
        raise Unsupported(
            f"this model cannot rerank; it can: {', '.join(self.abilities)}", param="model"
        )

    async def close(self) -> None:
        """Release the engine (called once, before the runner exits)."""
