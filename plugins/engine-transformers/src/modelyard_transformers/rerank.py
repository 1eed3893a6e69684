"""Rerank with a sentence-transformers ``CrossEncoder``: one relevance score per document.

The core sorts the results, cuts them to ``top_n`` and attaches the documents; this module scores
every (query, document) pair, in request order. Concurrent requests share one ``predict`` batch.
Pairs longer than the model's maximum are cut to it (what cross-encoders are trained to expect,
and what Xinference and Cohere do) and named in ``truncated_documents``; with ``truncate`` false
the request is refused instead.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from modelyard.engine import LoadedModel
from modelyard.errors import InvalidRequest
from modelyard.schemas import RerankRequest
from modelyard.specs import RerankFamily

from .batching import MicroBatcher
from .params import SentenceParams, load_sentence_model, parse_params

log = logging.getLogger(__name__)


class CrossEncoderReranker(LoadedModel):
    abilities = ("rerank",)

    def __init__(self, family: RerankFamily, params: dict[str, Any], path: Path) -> None:
        opts: SentenceParams = parse_params(params, SentenceParams)
        self.model, self.threads = load_sentence_model("CrossEncoder", params, path)
        # sentence-transformers 6 calls it max_seq_length (max_length is deprecated); 5.x max_length.
        has_new = hasattr(type(self.model), "max_seq_length")
        self.max_length = int(
            (self.model.max_seq_length if has_new else self.model.max_length) or family.max_tokens
        )
        super().__init__(context_length=self.max_length)
        self.batcher: MicroBatcher[tuple[str, str]] = MicroBatcher(
            self._predict, max_items=opts.max_batch_size, wait_s=opts.batch_wait_ms / 1000
        )

    @property
    def batch_stats(self) -> dict[str, Any]:
        return self.batcher.stats.as_dict()

    def _predict(self, pairs: list[tuple[str, str]]) -> Any:
        import torch

        with torch.inference_mode():
            return self.model.predict(
                pairs, batch_size=len(pairs), convert_to_numpy=True, show_progress_bar=False
            )

    def pair_token_counts(self, query: str, documents: list[str]) -> list[int]:
        encoded = self.model.tokenizer([query] * len(documents), documents, add_special_tokens=True)
        return [len(ids) for ids in encoded["input_ids"]]

    async def rerank(self, request: RerankRequest) -> dict[str, Any]:
        documents = request.texts()
        if not documents:
            raise InvalidRequest(
                "documents is empty: send at least one document to rank", param="documents"
            )
        lengths = self.pair_token_counts(request.query, documents)
        truncated = [i for i, n in enumerate(lengths) if n > self.max_length]
        if truncated and not request.truncate:
            raise InvalidRequest(
                f"documents {truncated} are longer, with the query, than the model's maximum of "
                f"{self.max_length} tokens; shorten them, or send truncate=true to cut them",
                param="documents",
            )
        scores = await self.batcher.submit([(request.query, doc) for doc in documents])
        results = [{"index": i, "relevance_score": float(score)} for i, score in enumerate(scores)]
        out: dict[str, Any] = {
            "results": results,
            "usage": {"input_tokens": sum(min(n, self.max_length) for n in lengths)},
        }
        if truncated:
            log.info("cut documents %s to %d tokens (query + document)", truncated, self.max_length)
            out["truncated_documents"] = truncated
        return out

    async def close(self) -> None:
        await self.batcher.aclose()


def load_reranker(family: RerankFamily, params: dict[str, Any], path: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(family, params, path)
