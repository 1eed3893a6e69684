"""vLLM's errors → modelyard's, so that a bad request stays a 400 with vLLM's own message."""

from __future__ import annotations

from typing import Any

from modelyard.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelyardError,
    Overloaded,
    Unavailable,
    Unsupported,
)

_CONTEXT_WORDS = ("context length", "maximum context", "max_model_len", "context_length")


_TOOL_HINT = (
    " (in modelyard: launch the model with the parameter tool_call_parser, e.g. hermes, or register it "
    "with a tool_parser)"
)


def from_status(status: int, message: str, param: str | None = None) -> ModelyardError:
    """The modelyard error for an HTTP status and message coming from vLLM's OpenAI layer."""
    if "--tool-call-parser" in message:
        message += _TOOL_HINT
    if status in (400, 422):
        if any(word in message.lower() for word in _CONTEXT_WORDS):
            return ContextLengthExceeded(message, param=param)
        return InvalidRequest(message, param=param)
    if status == 501:
        return Unsupported(message, param=param)
    if status == 429:
        return Overloaded(message)
    if status == 503:
        return Unavailable(message)
    # A 404 from vLLM would mean modelyard addressed the wrong served name: a bug, not the user's.
    return EngineError(f"vLLM failed: {message}")


def from_error_body(body: dict[str, Any]) -> ModelyardError:
    """``{"error": {"message", "code", "param", ...}}`` as vLLM's ErrorResponse serialises."""
    error = body.get("error") or {}
    if not isinstance(error, dict):
        return EngineError(f"vLLM failed: {error}")
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    return from_status(status, str(error.get("message", "unknown vLLM error")), error.get("param"))


def from_exception(exc: BaseException) -> ModelyardError:
    """Classify an exception raised by vLLM's serving code the way vLLM's own server would."""
    if isinstance(exc, ModelyardError):
        return exc
    from vllm.entrypoints.serve.exception_handling.error_response import create_error_response

    if not isinstance(exc, Exception):
        return EngineError(f"vLLM failed: {exc!r}")
    response = create_error_response(exc)
    return from_status(int(response.error.code), response.error.message, response.error.param)
