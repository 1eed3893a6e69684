"""Embeddings with sentence-transformers; concurrent requests share one ``encode`` batch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelyard.engine import LoadedModel
from modelyard.errors import InvalidRequest, Unsupported
from modelyard.schemas import EmbeddingRequest
from modelyard.specs import EmbeddingFamily

from .batching import MicroBatcher
from .params import SentenceParams, load_sentence_model, parse_params

log = logging.getLogger(__name__)


def request_texts(request: EmbeddingRequest) -> list[str]:
    value = request.input
    if isinstance(value, str):
        return [value]
    if not value:
        raise InvalidRequest(
            "input is empty: send a string or a non-empty list of strings", param="input"
        )
    if not all(isinstance(item, str) for item in value):
        raise Unsupported(
            "this embedding model takes text: send input as a string or a list of strings "
            "(arrays of token ids are not supported by sentence_transformers)",
            param="input",
        )
    return list(value)  # type: ignore[arg-type]


def check_lengths(lengths: list[int], limit: int, *, truncate: bool, what: str) -> list[int]:
    """Indices of the inputs over ``limit`` tokens; refused (400) unless the request allows truncation."""
    over = [i for i, n in enumerate(lengths) if n > limit]
    if over and not truncate:
        i = over[0]
        more = f" (and {len(over) - 1} more)" if len(over) > 1 else ""
        raise InvalidRequest(
            f"{what}[{i}] has {lengths[i]} tokens{more}, more than this model's maximum of {limit}; "
            f'shorten it, or send "truncate": true to have it cut to {limit} tokens',
            param=f"{what}[{i}]",
            code="input_too_long",
        )
    return over


class SentenceEmbedder(LoadedModel):
    abilities = ("embed",)

    def __init__(self, family: EmbeddingFamily, params: dict[str, Any], path: Path) -> None:
        opts: SentenceParams = parse_params(params, SentenceParams)
        self.model, self.threads = load_sentence_model("SentenceTransformer", params, path)
        self.max_seq_length = int(self.model.max_seq_length or family.max_tokens)
        # sentence-transformers 6 renamed the getter; 5.x has only the old name.
        getter = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimensions = int(getter() or family.dimensions)
        super().__init__(context_length=self.max_seq_length)
        self.batcher: MicroBatcher[str] = MicroBatcher(
            self._encode, max_items=opts.max_batch_size, wait_s=opts.batch_wait_ms / 1000
        )

    @property
    def batch_stats(self) -> dict[str, Any]:
        return self.batcher.stats.as_dict()

    def _encode(self, texts: list[str]) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.encode(
                texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False
            )

    def token_counts(self, texts: list[str]) -> list[int]:
        return [
            len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]
        ]

    async def embed(self, request: EmbeddingRequest) -> dict[str, Any]:
        texts = request_texts(request)
        if request.dimensions is not None and request.dimensions != self.dimensions:
            raise Unsupported(
                f"this model embeds in {self.dimensions} dimensions and cannot shorten its vectors; "
                f"leave dimensions out or send {self.dimensions}",
                param="dimensions",
            )
        lengths = self.token_counts(texts)
        truncated = check_lengths(
            lengths, self.max_seq_length, truncate=request.truncate, what="input"
        )
        vectors = await self.batcher.submit(texts)
        # Float lists always: the core applies encoding_format (base64) for every engine alike.
        data = [
            {"index": i, "object": "embedding", "embedding": v.tolist()}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(min(n, self.max_seq_length) for n in lengths)
        result: dict[str, Any] = {
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        if truncated:
            log.info(
                "truncated inputs %s to %d tokens, as the request allowed",
                truncated,
                self.max_seq_length,
            )
            result["truncated_inputs"] = truncated
        return result

    async def close(self) -> None:
        await self.batcher.aclose()


def load_embedder(family: EmbeddingFamily, params: dict[str, Any], path: Path) -> SentenceEmbedder:
    return SentenceEmbedder(family, params, path)
