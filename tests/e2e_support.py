"""Small helpers the end-to-end tests share: reading SSE streams, asking the model a known question."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SYSTEM = "You are a helpful assistant. Answer in one short sentence."


def data_events(lines: Iterator[str], count: int) -> list[str]:
    """Up to ``count`` more ``data:`` events of an SSE stream (fewer when it ends)."""
    found: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            found.append(line)
            if len(found) == count:
                break
    return found


def capital_of_france(client: Any, model: str) -> str:
    """SmolLM2's answer (greedy, with the system prompt it needs) through an openai client."""
    answer = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        max_tokens=24,
        temperature=0,
    )
    return str(answer.choices[0].message.content or "")
