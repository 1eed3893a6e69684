"""The msgspec Decoders for the inference request bodies, built once at import.

msgspec refuses unions with more than one array type, which ``CompletionRequest.prompt``
(``str | list[str] | list[int]``) and ``EmbeddingRequest.input`` are in schemas.py as committed.
Until the contract spells them as one list of a union, the server decodes into subclasses that do
exactly that and check that a list is homogeneous (only strings or only token ids). The subclasses
are still ``CompletionRequest``/``EmbeddingRequest`` instances, so the manager sees its own types.
When schemas.py becomes decodable as is, its types are used directly and this shim does nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from msgspec import Meta

from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest

T = TypeVar("T")


def _homogeneous(field: str, value: Any, kinds: tuple[tuple[type, ...], ...]) -> None:
    if not isinstance(value, list):
        return
    for allowed in kinds:
        if all(isinstance(item, allowed) for item in value):
            return
    names = " or ".join("/".join(k.__name__ for k in allowed) for allowed in kinds)
    raise ValueError(
        f"`{field}` must be a string or a list holding only one kind of item ({names})"
    )


class _CompletionBody(CompletionRequest, kw_only=True, omit_defaults=True):
    prompt: str | Annotated[list[str | int], Meta(min_length=1)]

    def __post_init__(self) -> None:
        _homogeneous("prompt", self.prompt, ((str,), (int,)))


class _EmbeddingBody(EmbeddingRequest, kw_only=True, omit_defaults=True):
    input: str | Annotated[list[str | int | list[int]], Meta(min_length=1)]

    def __post_init__(self) -> None:
        _homogeneous("input", self.input, ((str,), (int,), (list,)))


def _decoder(contract: type[T], fallback: type[Any]) -> msgspec.json.Decoder[T]:
    try:
        return msgspec.json.Decoder(contract)
    except TypeError:  # the contract type is not decodable by msgspec (see the module docstring)
        return msgspec.json.Decoder(fallback)


CHAT = msgspec.json.Decoder(ChatCompletionRequest)
COMPLETION = _decoder(CompletionRequest, _CompletionBody)
EMBEDDING = _decoder(EmbeddingRequest, _EmbeddingBody)
RERANK = msgspec.json.Decoder(RerankRequest)
