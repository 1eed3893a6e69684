"""The request id the core gives a request (X-Request-Id or ``request_id``) is the one vLLM runs
it under, so an abort or a log line names the same request; without one vLLM gets a fresh id."""

from __future__ import annotations

from argparse import Namespace

from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard_vllm.model import VllmModel


def model() -> VllmModel:
    return VllmModel(None, Namespace(), served_name="m", context_length=2048, abilities=("chat",))


def chat(request_id: str | None) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="hi")], request_id=request_id
    )


def test_the_clients_request_id_reaches_vllm() -> None:
    assert model()._body(chat("req-42"))["request_id"] == "req-42"


def test_without_one_each_request_gets_its_own() -> None:
    first, second = model()._body(chat(None)), model()._body(chat(None))
    assert first["request_id"] and first["request_id"] != second["request_id"]
