"""Custom registrations (Xinference's ``model_registrations`` shape) of the prepared local test
models, shared by the end-to-end tests of every engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def smollm2_family(
    name: str,
    folder: Path,
    *,
    model_format: str = "pytorch",
    quantization: str = "none",
    tools: bool = False,
    **fields: Any,
) -> dict[str, Any]:
    """SmolLM2-135M-Instruct in ``folder`` as the LLM family ``name``; ``tools`` adds the tools
    ability with the Hermes tool parser; ``fields`` (chat_template, ...) are added as given."""
    family: dict[str, Any] = {
        "model_name": name,
        "model_type": "LLM",
        "model_ability": ["chat", "generate", *(["tools"] if tools else [])],
        "context_length": 2048,
        "architectures": ["LlamaForCausalLM"],
        **({"tool_parser": "hermes"} if tools else {}),
        **fields,
        "model_specs": [
            {
                "model_format": model_format,
                "model_size_in_billions": 0.135,
                "quantizations": [quantization],
                "sources": [{"hub": "local", "model_id": str(folder)}],
            }
        ],
    }
    return family
