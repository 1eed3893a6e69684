"""llama.cpp's failures -> modelyard errors that say what to change.

xllamacpp reports a failure in one of three ways: it raises (``ValueError`` for a malformed body),
it returns ``{"error": {...}}`` instead of a response, or it passes such a dict to the stream
callback as a chunk. All three go through ``from_error_body`` / ``from_exception``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelyard.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelyardError,
    Unavailable,
    Unsupported,
)


@dataclass(frozen=True)
class Slots:
    """How the context is divided, to explain a context overflow in the user's terms."""

    n_ctx: int
    n_parallel: int
    slot_context: int


def _context_advice(slots: Slots) -> str:
    return (
        f"each of the {slots.n_parallel} parallel slots has {slots.slot_context} tokens of context "
        f"(n_ctx={slots.n_ctx} / n_parallel={slots.n_parallel}): raise n_ctx or lower n_parallel at launch, "
        "or shorten the prompt"
    )


def from_error_body(error: Any, slots: Slots) -> ModelyardError:
    """Map llama.cpp's ``{"code", "message", "type", ...}`` error object to a modelyard error."""
    if not isinstance(error, dict):
        return EngineError(f"llama.cpp failed: {error}")
    message = str(error.get("message") or error)
    kind = str(error.get("type") or "")
    code = error.get("code")
    lowered = message.lower()
    if kind == "exceed_context_size_error":
        needed = error.get("n_prompt_tokens")
        needs = (
            f"the request needs {needed} tokens but "
            if needed is not None
            else "the request is too long: "
        )
        return ContextLengthExceeded(needs + _context_advice(slots), param="messages")
    if "too big compared to kv size" in lowered or "larger than the max context size" in lowered:
        return ContextLengthExceeded(
            f"the prompt does not fit: {_context_advice(slots)}", param="messages"
        )
    if "input is too large to process" in lowered:
        return ContextLengthExceeded(
            f"an input is longer than one micro-batch ({message}): launch with a larger n_ubatch and n_batch "
            "(at most n_ctx / n_parallel), or send shorter inputs",
            param="input",
        )
    if "context size has been exceeded" in lowered or ("kv cache" in lowered and "full" in lowered):
        return ContextLengthExceeded(
            f"the KV cache is full ({message}): the requests in flight need more than the {slots.n_ctx} tokens "
            f"of KV cache shared by {slots.n_parallel} slots: raise n_ctx or lower n_parallel at launch, "
            "or lower max_tokens",
        )
    if "image" in lowered and ("fail" in lowered or "process" in lowered):
        return InvalidRequest(
            f"llama.cpp could not process an image ({message}); this is usually a lack of memory: "
            "launch with a smaller n_ctx, or send a smaller image",
            param="messages",
        )
    if code == 501 or kind == "not_supported_error":
        return Unsupported(
            f"{message} (for embeddings launch with embedding=true; rerank needs a reranker GGUF)"
        )
    if code == 503 or kind == "unavailable_error":
        return Unavailable(f"llama.cpp is not ready: {message}")
    if (isinstance(code, int) and 400 <= code < 500) or kind == "invalid_request_error":
        return InvalidRequest(message)
    return EngineError(f"llama.cpp failed: {message}")


def from_exception(exc: BaseException, slots: Slots) -> ModelyardError:
    if isinstance(exc, ModelyardError):
        return exc
    if isinstance(exc, ValueError):
        return InvalidRequest(f"llama.cpp rejected the request: {exc}")
    return EngineError(f"llama.cpp failed: {type(exc).__name__}: {exc}")


def error_in(result: Any) -> Any:
    """The error object of a response or chunk, or None."""
    if isinstance(result, dict) and "error" in result and "choices" not in result:
        return result["error"]
    return None
