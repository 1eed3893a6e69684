"""llama.cpp's error bodies and exceptions -> modelyard errors that say what to change."""

from __future__ import annotations

from typing import Any

import pytest
from modelyard.errors import (
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    ModelyardError,
    Unavailable,
    Unsupported,
)
from modelyard_llamacpp.failures import Slots, error_in, from_error_body, from_exception

SLOTS = Slots(n_ctx=1024, n_parallel=4, slot_context=256)


def test_exceed_context_names_the_numbers_and_the_fix() -> None:
    body = {
        "code": 400,
        "message": "request (631 tokens) exceeds the available context size (256 tokens), try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 631,
        "n_ctx": 256,
    }
    error = from_error_body(body, SLOTS)
    assert isinstance(error, ContextLengthExceeded) and error.status == 400
    assert error.code == "context_length_exceeded"
    assert error.message == (
        "the request needs 631 tokens but each of the 4 parallel slots has 256 tokens of context "
        "(n_ctx=1024 / n_parallel=4): raise n_ctx or lower n_parallel at launch, or shorten the prompt"
    )


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        (
            {
                "code": 400,
                "message": "Input prompt is too big compared to KV size. Please try increasing KV size.",
            },
            ContextLengthExceeded,
            "raise n_ctx or lower n_parallel",
        ),
        (
            {"code": 500, "message": "Context size has been exceeded."},
            ContextLengthExceeded,
            "the KV cache is full",
        ),
        (
            {
                "code": 500,
                "message": "input is too large to process. increase the physical batch size",
            },
            ContextLengthExceeded,
            "larger n_ubatch",
        ),
        (
            {"code": 500, "message": "failed to process image"},
            InvalidRequest,
            "lack of memory: launch with a smaller n_ctx",
        ),
        (
            {
                "code": 501,
                "message": "This server does not support embeddings. Start it with `--embeddings`",
                "type": "not_supported_error",
            },
            Unsupported,
            "embedding=true",
        ),
        (
            {"code": 503, "message": "Loading model", "type": "unavailable_error"},
            Unavailable,
            "not ready",
        ),
        (
            {
                "code": 400,
                "message": "Field 'n': Value must be between 1 <= value <= 1, but got 2",
                "type": "invalid_request_error",
            },
            InvalidRequest,
            "Field 'n'",
        ),
        (
            {"code": 500, "message": "Compute error.", "type": "server_error"},
            EngineError,
            "llama.cpp failed: Compute error.",
        ),
    ],
)
def test_error_bodies(body: dict[str, Any], kind: type[ModelyardError], fragment: str) -> None:
    error = from_error_body(body, SLOTS)
    assert type(error) is kind
    assert fragment in error.message


def test_exceptions() -> None:
    assert (
        type(from_exception(ValueError("Expected 'messages' to be an array"), SLOTS))
        is InvalidRequest
    )
    assert (
        "Expected 'messages'"
        in from_exception(ValueError("Expected 'messages' to be an array"), SLOTS).message
    )
    crash = from_exception(RuntimeError("boom"), SLOTS)
    assert type(crash) is EngineError and "RuntimeError: boom" in crash.message
    ours = Unsupported("no")
    assert from_exception(ours, SLOTS) is ours


def test_error_in_tells_errors_from_answers() -> None:
    assert error_in({"error": {"code": 400}}) == {"code": 400}
    assert error_in({"choices": [], "usage": {}}) is None
    assert error_in(None) is None
    assert type(from_error_body("odd", SLOTS)) is EngineError


@pytest.mark.parametrize("prompt", ["", ["a", ""]])
def test_an_empty_prompt_with_several_choices_is_refused(prompt: Any) -> None:
    from modelyard.errors import InvalidRequest
    from modelyard.schemas import CompletionRequest
    from modelyard_llamacpp import completions

    with pytest.raises(InvalidRequest, match="empty prompt") as info:
        completions.check(CompletionRequest(model="m", prompt=prompt, n=2))
    assert info.value.param == "prompt"
    completions.check(CompletionRequest(model="m", prompt=prompt, n=1))  # this one finishes
    completions.check(CompletionRequest(model="m", prompt="a", n=2))
