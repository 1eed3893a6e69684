"""A chat request as the arguments of a Hugging Face chat template (``apply_chat_template``), for
engines that render prompts themselves (Transformers, MLX)."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from .errors import Unsupported
from .schemas import ChatCompletionRequest, ChatMessage, TextPart


def _arguments(value: Any) -> Any:
    # OpenAI sends tool-call arguments as a JSON string; chat templates expect the object.
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def template_message(message: ChatMessage, index: int, engine: str) -> dict[str, Any]:
    if isinstance(message.content, list) and any(
        not isinstance(part, TextPart) for part in message.content
    ):
        raise Unsupported(
            f"messages[{index}] has image or audio parts; this model on {engine} takes text only",
            param=f"messages[{index}].content",
        )
    out: dict[str, Any] = {"role": message.role, "content": message.text()}
    if message.name:
        out["name"] = message.name
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.reasoning_content:
        out["reasoning_content"] = message.reasoning_content
    if message.tool_calls:
        calls = []
        for call in message.tool_calls:
            call = dict(call)
            if isinstance(call.get("function"), dict):
                call["function"] = {
                    **call["function"],
                    "arguments": _arguments(call["function"].get("arguments")),
                }
            calls.append(call)
        out["tool_calls"] = calls
    return out


def template_arguments(request: ChatCompletionRequest, engine: str) -> dict[str, Any]:
    """``messages``, ``tools`` and the template keyword arguments (``enable_thinking``...)."""
    kwargs = dict(request.chat_template_kwargs or {})
    if request.enable_thinking is not None:
        kwargs.setdefault("enable_thinking", request.enable_thinking)
    tools = None
    if request.tools and request.tool_choice != "none":
        tools = [
            {"type": "function", "function": msgspec.to_builtins(tool.function)}
            for tool in request.tools
        ]
    messages = [template_message(m, i, engine) for i, m in enumerate(request.messages)]
    return {"conversation": messages, "tools": tools, **kwargs}
