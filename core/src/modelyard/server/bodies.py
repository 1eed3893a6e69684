"""The msgspec Decoders for the inference request bodies, built once at import."""

from __future__ import annotations

import msgspec

from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest

CHAT = msgspec.json.Decoder(ChatCompletionRequest)
COMPLETION = msgspec.json.Decoder(CompletionRequest)
EMBEDDING = msgspec.json.Decoder(EmbeddingRequest)
RERANK = msgspec.json.Decoder(RerankRequest)
