"""modelyard serve → llama.cpp → SmolLM2-135M-Instruct (GGUF), driven by the official openai client."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def smollm2(server: Server, smollm2_gguf: dict[str, str]) -> str:
    uid = server.launch(model_uid="smollm2", n_ctx=2048, n_parallel=2, **smollm2_gguf)
    yield uid
    server.terminate(uid)


def test_engine_was_chosen_by_the_core(server: Server, smollm2: str) -> None:
    described = server.describe(smollm2).json()
    assert described["model_engine"] == "llama.cpp"
    assert described["model_type"] == "LLM"
    assert "chat" in described["model_ability"]
    assert described["id"] == smollm2


def test_chat_answers_with_real_usage(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.chat.completions.create(
        model=smollm2,
        # The 135M model needs a system prompt to answer this bare question sensibly (checked in-process).
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=16,
        temperature=0,
    )
    assert reply.model == smollm2
    assert reply.choices[0].message.role == "assistant"
    assert "Paris" in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 5
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_chat_streams_and_reports_usage_when_asked(oai: openai.OpenAI, smollm2: str) -> None:
    stream = oai.chat.completions.create(
        model=smollm2,
        messages=[{"role": "user", "content": "Count from one to five."}],
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert text.strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    assert all(c.model == smollm2 and c.id == chunks[0].id for c in chunks)


def test_stream_without_include_usage_has_no_usage_chunk(oai: openai.OpenAI, smollm2: str) -> None:
    stream = oai.chat.completions.create(
        model=smollm2, messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True
    )
    assert all(chunk.usage is None for chunk in stream)


def test_completions(oai: openai.OpenAI, smollm2: str) -> None:
    reply = oai.completions.create(
        model=smollm2, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert "Paris" in reply.choices[0].text
    assert reply.usage.completion_tokens > 0


def test_unknown_model_is_404_with_a_message(oai: openai.OpenAI, smollm2: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert "no-such-model" in str(caught.value)


def test_prompt_longer_than_the_context_is_a_400_that_says_what_to_change(
    oai: openai.OpenAI, smollm2: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(
            model=smollm2, messages=[{"role": "user", "content": "hello " * 3000}], max_tokens=4
        )
    message = str(caught.value)
    assert "n_ctx" in message or "context" in message
    # The model keeps serving afterwards.
    reply = oai.chat.completions.create(
        model=smollm2, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.usage.completion_tokens > 0


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"model": "smollm2", "messages": [', None),
        (b'{"model": "smollm2", "messages": []}', "messages"),
        (
            b'{"model": "smollm2", "messages": [{"role": "user", "content": "x"}], "temperature": 5}',
            "temperature",
        ),
        (b'{"model": "smollm2", "messages": "hello"}', "messages"),
    ],
)
def test_bad_bodies_are_400_openai_errors(
    server: Server, smollm2: str, body: bytes, field: str | None
) -> None:
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == response.json()["detail"]
    if field:
        assert field in error["message"]


def test_resident_memory_shows_in_describe_metrics_and_list(
    server: Server, smollm2: str, modelyard_command: list[str]
) -> None:
    described = server.describe(smollm2).json()
    memory = described["resident_memory_bytes"]
    # The runner holds the GGUF's weights (~80 MB) and llama.cpp's buffers: far above zero.
    assert isinstance(memory, int) and memory > 50 * 2**20
    with server.client() as http:
        listed = {m["id"]: m for m in http.get("/v1/models").json()["data"]}
        metrics = http.get("/metrics").text
    assert listed[smollm2]["resident_memory_bytes"] > 50 * 2**20
    line = next(
        line
        for line in metrics.splitlines()
        if line.startswith(f'modelyard_model_resident_memory_bytes{{model="{smollm2}"}}')
    )
    assert float(line.split()[-1]) > 50 * 2**20
    table = subprocess.run(
        [*modelyard_command, "list", "--endpoint", server.url],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},  # a wide table: no cell wrapped
    ).stdout
    assert "Memory" in table and "MiB" in table
