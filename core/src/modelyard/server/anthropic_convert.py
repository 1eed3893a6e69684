"""Anthropic Messages ⇄ OpenAI chat: the translation, kept pure (no I/O) so it is tested alone.

A Messages request becomes a ``ChatCompletionRequest`` that every engine already serves: the
``system`` prompt a system message, ``tool_use`` blocks assistant tool calls, ``tool_result``
blocks tool messages (placed first, right after the assistant turn that called them, as OpenAI
requires). The engine's chat chunks come back as one Anthropic ``message`` or, streamed, as
Anthropic's event sequence (``EventWriter``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import msgspec

from ..errors import InvalidRequest, Unsupported
from ..schemas import (
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionDef,
    ImagePart,
    ImageURL,
    JSONSchemaFormat,
    ResponseFormat,
    TextPart,
    Tool,
)
from .anthropic_schemas import (
    Base64Source,
    CountTokensRequest,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from .chat_bridge import checked

Chunk = dict[str, Any]
Event = tuple[str, dict[str, Any]]

# OpenAI finish_reason -> Anthropic stop_reason ("stop" is refined to stop_sequence when the
# engine names the stop string it matched, as vLLM does in ``stop_reason``).
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def _image(block: ImageBlock) -> ImagePart:
    source = block.source
    if isinstance(source, Base64Source):
        return ImagePart(ImageURL(f"data:{source.media_type};base64,{source.data}"))
    return ImagePart(ImageURL(source.url))


def _tool_result(block: ToolResultBlock, where: str) -> ChatMessage:
    if block.content is None or isinstance(block.content, str):
        text = block.content or ""
    else:
        if any(isinstance(part, ImageBlock) for part in block.content):
            raise Unsupported(
                "images inside a tool_result are not supported: OpenAI-style tool messages carry text",
                param=f"{where}.content",
            )
        text = "".join(part.text for part in block.content if isinstance(part, TextBlock))
    if block.is_error:
        text = f"Error: {text}"
    return ChatMessage(role="tool", content=text, tool_call_id=block.tool_use_id)


def _user(message: MessageParam, where: str) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(role="user", content=message.content)]
    results: list[ChatMessage] = []
    parts: list[ContentPart] = []
    for j, block in enumerate(message.content):
        at = f"{where}.content[{j}]"
        if isinstance(block, ToolResultBlock):
            results.append(_tool_result(block, at))
        elif isinstance(block, TextBlock):
            parts.append(TextPart(block.text))
        elif isinstance(block, ImageBlock):
            parts.append(_image(block))
        else:
            raise InvalidRequest(
                f"a user message cannot hold a {block.__struct_config__.tag} block", param=at
            )
    if not parts and results:
        return results
    if all(isinstance(part, TextPart) for part in parts):
        # One string reads the same to every chat template; lists of parts do not.
        text = "\n".join(part.text for part in parts if isinstance(part, TextPart))
        return [*results, ChatMessage(role="user", content=text)]
    return [*results, ChatMessage(role="user", content=parts)]


def _assistant(message: MessageParam, where: str) -> ChatMessage:
    if isinstance(message.content, str):
        return ChatMessage(role="assistant", content=message.content)
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(message.content):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append(
                {
                    "id": block.id,
                    "type": "function",
                    "function": {"name": block.name, "arguments": arguments},
                }
            )
        elif isinstance(block, ThinkingBlock):
            thinking.append(block.thinking)
        elif isinstance(block, RedactedThinkingBlock):
            continue  # opaque to anyone but Anthropic's own models
        else:
            raise InvalidRequest(
                f"an assistant message cannot hold a {block.__struct_config__.tag} block",
                param=f"{where}.content[{j}]",
            )
    return ChatMessage(
        role="assistant",
        content="".join(texts) if texts or not calls else None,
        tool_calls=calls or None,
        reasoning_content="".join(thinking) if thinking else None,
    )


def chat_messages(body: MessagesRequest | CountTokensRequest) -> list[ChatMessage]:
    out: list[ChatMessage] = []
    if body.system:
        system = body.system
        text = system if isinstance(system, str) else "\n".join(b.text for b in system)
        out.append(ChatMessage(role="system", content=text))
    for i, message in enumerate(body.messages):
        where = f"messages[{i}]"
        if message.role == "user":
            out.extend(_user(message, where))
        else:
            out.append(_assistant(message, where))
    return out


def _tools(body: MessagesRequest | CountTokensRequest) -> list[Tool] | None:
    if body.tools is None:
        return None
    tools = []
    for i, tool in enumerate(body.tools):
        if tool.type not in (None, "custom"):
            raise Unsupported(
                f"tool type {tool.type!r} is one of Anthropic's server tools, which local models "
                "do not have; declare a client tool with name, description and input_schema",
                param=f"tools[{i}].type",
            )
        tools.append(Tool(_function(tool.name, tool.description, tool.input_schema, f"tools[{i}]")))
    return tools


def _function(name: str, description: str | None, schema: Any, where: str) -> FunctionDef:
    """A tool's function, checked by the chat schema's own rules (name, object schema)."""
    plain = {"name": name, "description": description, "parameters": schema}
    try:
        return msgspec.convert(plain, FunctionDef)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(f"invalid tool {name!r}: {exc}", param=where) from None


def _tool_choice(body: MessagesRequest | CountTokensRequest) -> tuple[Any, bool | None]:
    choice = body.tool_choice
    if choice is None:
        return None, None
    parallel = False if choice.disable_parallel_tool_use else None
    if choice.type == "tool":
        if not choice.name:
            raise InvalidRequest(
                'tool_choice of type "tool" needs the tool\'s name', param="tool_choice.name"
            )
        return {"type": "function", "function": {"name": choice.name}}, parallel
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type], parallel


def to_chat(
    body: MessagesRequest | CountTokensRequest, *, max_tokens: int | None = None
) -> ChatCompletionRequest:
    """The chat request an engine serves for this Messages (or count_tokens) request."""
    tool_choice, parallel = _tool_choice(body)
    thinking = body.thinking.type if body.thinking is not None else None
    request = ChatCompletionRequest(
        model=body.model,
        messages=chat_messages(body),
        tools=_tools(body),
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        enable_thinking={"enabled": True, "disabled": False}.get(thinking or ""),
        max_tokens=max_tokens,
    )
    output = body.output_config.format if body.output_config is not None else None
    if output is not None:
        request.response_format = ResponseFormat(
            "json_schema", JSONSchemaFormat(schema=output.schema)
        )
    if isinstance(body, MessagesRequest):
        request.max_tokens = body.max_tokens
        request.stream = body.stream
        request.stop = body.stop_sequences or None
        request.temperature = body.temperature
        request.top_p = body.top_p
        request.top_k = body.top_k
    return checked(request)


def stop_reason(finish_reason: str | None, matched: Any, stop_sequences: list[str]) -> str:
    if finish_reason == "stop" and isinstance(matched, str) and matched in stop_sequences:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def _tool_input(arguments: str) -> dict[str, Any] | None:
    """The parsed arguments of a tool call, or None when they are not a JSON object."""
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class EventWriter:
    """Turns one generation's OpenAI chat chunks into Anthropic's stream events, and keeps the
    blocks so that ``message()`` is the same answer unstreamed.

    A block is open at a time: text, thinking or one tool_use (OpenAI tool-call deltas with a new
    ``index`` open a new block; their ``arguments`` pieces become ``input_json_delta``s)."""

    def __init__(self, model: str, stop_sequences: list[str] | None = None) -> None:
        self.id = message_id()
        self.model = model
        self.stop_sequences = stop_sequences or []
        self.blocks: list[dict[str, Any]] = []
        self.open: str | None = None  # "text", "thinking" or "tool_use:<openai index>"
        self.arguments: dict[int, str] = {}  # block index -> tool arguments so far
        self.finish_reason: str | None = None
        self.matched: Any = None
        self.usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0}

    def _message(self, content: list[dict[str, Any]], reason: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": reason,
            "stop_sequence": self.matched if reason == "stop_sequence" else None,
            "usage": dict(self.usage),
        }

    def start(self) -> list[Event]:
        return [
            ("message_start", {"type": "message_start", "message": self._message([], None)}),
            ("ping", {"type": "ping"}),
        ]

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        self.open = None
        index = len(self.blocks) - 1
        block = self.blocks[index]
        if block["type"] == "tool_use":
            parsed = _tool_input(self.arguments.get(index, ""))
            block["input"] = parsed if parsed is not None else {}
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open(self, key: str, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.open = key
        self.blocks.append(block)
        # A copy: the block grows with the deltas, the start event shows it empty.
        shown = {**block, "input": {}} if block["type"] == "tool_use" else dict(block)
        start = {
            "type": "content_block_start",
            "index": len(self.blocks) - 1,
            "content_block": shown,
        }
        return [*events, ("content_block_start", start)]

    def _delta(self, delta: dict[str, Any]) -> Event:
        index = len(self.blocks) - 1
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": index, "delta": delta},
        )

    def _text(self, kind: str, piece: str) -> list[Event]:
        events = [] if self.open == kind else self._open(kind, {"type": kind, kind: ""})
        self.blocks[-1][kind] += piece
        field = "text_delta" if kind == "text" else "thinking_delta"
        return [*events, self._delta({"type": field, kind: piece})]

    def _tool_call(self, call: dict[str, Any], position: int) -> list[Event]:
        key = f"tool_use:{call.get('index', position)}"
        function = call.get("function") or {}
        events: list[Event] = []
        if self.open != key:
            block = {
                "type": "tool_use",
                "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                "name": function.get("name") or "",
            }
            events = self._open(key, block)
        piece = function.get("arguments") or ""
        if piece:
            index = len(self.blocks) - 1
            self.arguments[index] = self.arguments.get(index, "") + piece
            events.append(self._delta({"type": "input_json_delta", "partial_json": piece}))
        return events

    def feed(self, chunk: Chunk) -> list[Event]:
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Anthropic has one answer per request
            delta = choice.get("delta") or choice.get("message") or {}
            if delta.get("reasoning_content"):
                events += self._text("thinking", delta["reasoning_content"])
            if delta.get("content"):
                events += self._text("text", delta["content"])
            for position, call in enumerate(delta.get("tool_calls") or ()):
                events += self._tool_call(call, position)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                self.matched = choice.get("stop_reason")
        usage = chunk.get("usage")
        if usage:
            self.usage = {
                "input_tokens": int(usage.get("prompt_tokens") or 0),
                "output_tokens": int(usage.get("completion_tokens") or 0),
            }
        return events

    def _reason(self) -> str:
        reason = stop_reason(self.finish_reason, self.matched, self.stop_sequences)
        called = any(b["type"] == "tool_use" for b in self.blocks)
        if reason == "end_turn" and called:
            return "tool_use"
        if reason == "tool_use" and not called:
            return "end_turn"
        return reason

    def finish(self) -> list[Event]:
        reason = self._reason()
        delta = {
            "stop_reason": reason,
            "stop_sequence": self.matched if reason == "stop_sequence" else None,
        }
        return [
            *self._close(),
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": dict(self.usage)}),
            ("message_stop", {"type": "message_stop"}),
        ]

    def message(self) -> dict[str, Any]:
        """The whole answer as one ``message`` (call after the last ``feed``)."""
        self._close()
        content: list[dict[str, Any]] = []
        for index, block in enumerate(self.blocks):
            if block["type"] == "tool_use" and _tool_input(self.arguments.get(index, "")) is None:
                # Arguments that are not a JSON object cannot be a tool_use: say them as text.
                content.append({"type": "text", "text": self.arguments.get(index, "")})
                continue
            if block["type"] == "thinking":
                block = {**block, "signature": ""}
            content.append(block)
        reason = self._reason()
        if reason == "tool_use" and not any(b["type"] == "tool_use" for b in content):
            reason = "end_turn"
        return self._message(content, reason)


def error_type(status: int) -> str:
    """Anthropic's error ``type`` for an HTTP status."""
    return {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        503: "overloaded_error",
        529: "overloaded_error",
    }.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}
