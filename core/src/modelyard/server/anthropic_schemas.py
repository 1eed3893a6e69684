"""Anthropic Messages API bodies (``POST /v1/messages``), validated once at the HTTP edge.

Only the request is decoded; the response Structs exist so that ``/openapi.json`` can describe
the replies (the routes build them as dicts). Content blocks are a tagged union on ``type``, as
in Anthropic's reference; unknown top-level keys are tolerated (``metadata``, ``service_tier``...).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from ..schemas import PositiveInt

UnitInterval = Annotated[float, Meta(ge=0, le=1)]


class TextBlock(Struct, tag="text", tag_field="type", omit_defaults=True):
    text: str
    cache_control: dict[str, Any] | None = None
    citations: list[dict[str, Any]] | None = None


class Base64Source(Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(Struct, tag="url", tag_field="type"):
    url: str


class ImageBlock(Struct, tag="image", tag_field="type", omit_defaults=True):
    source: Base64Source | URLSource
    cache_control: dict[str, Any] | None = None


class ToolUseBlock(Struct, tag="tool_use", tag_field="type", omit_defaults=True):
    id: str
    name: str
    input: dict[str, Any]
    cache_control: dict[str, Any] | None = None


class ToolResultBlock(Struct, tag="tool_result", tag_field="type", omit_defaults=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] | None = None
    is_error: bool = False
    cache_control: dict[str, Any] | None = None


class ThinkingBlock(Struct, tag="thinking", tag_field="type", omit_defaults=True):
    thinking: str
    signature: str | None = None


class RedactedThinkingBlock(Struct, tag="redacted_thinking", tag_field="type"):
    data: str


ContentBlock = (
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
)


class MessageParam(Struct):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolParam(Struct, omit_defaults=True):
    name: str
    input_schema: dict[str, Any]
    description: str | None = None
    type: str | None = None  # "custom"; Anthropic's server tools (web_search...) are refused
    cache_control: dict[str, Any] | None = None


class ToolChoice(Struct, omit_defaults=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Struct, omit_defaults=True):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class JSONOutputFormat(Struct):
    type: Literal["json_schema"]
    schema: dict[str, Any]


class OutputConfig(Struct, omit_defaults=True):
    """Structured output (``format``: the answer follows a JSON schema); ``effort`` is ignored."""

    format: JSONOutputFormat | None = None
    effort: str | None = None


class _MessagesBase(Struct, kw_only=True, omit_defaults=True):
    model: str
    messages: Annotated[list[MessageParam], Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[ToolParam] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None


class MessagesRequest(_MessagesBase, kw_only=True, omit_defaults=True):
    """``POST /v1/messages``: ``max_tokens`` is required, as Anthropic requires it."""

    max_tokens: PositiveInt
    stop_sequences: Annotated[list[str], Meta(max_length=16)] | None = None
    stream: bool = False
    temperature: UnitInterval | None = None
    top_p: UnitInterval | None = None
    top_k: Annotated[int, Meta(ge=0)] | None = None
    metadata: dict[str, Any] | None = None


class CountTokensRequest(_MessagesBase, kw_only=True, omit_defaults=True):
    """``POST /v1/messages/count_tokens``: the prompt of a Messages request, without sampling."""


# -- replies (documentation types: the routes build the same shapes as dicts) --


class Usage(Struct):
    input_tokens: int
    output_tokens: int


class Message(Struct):
    id: str
    model: str
    content: list[TextBlock | ToolUseBlock | ThinkingBlock]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"] | None
    stop_sequence: str | None
    usage: Usage
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"


class StreamEvent(Struct):
    """One server-sent event: ``event: <type>`` and this object as ``data``. ``type`` is one of
    message_start, content_block_start, content_block_delta, content_block_stop, message_delta,
    message_stop, ping, error."""

    type: str
    index: int | None = None
    message: Message | None = None
    content_block: dict[str, Any] | None = None
    delta: dict[str, Any] | None = None
    usage: dict[str, int] | None = None


class TokenCount(Struct):
    input_tokens: int


class ErrorDetail(Struct):
    type: str
    message: str


class ErrorResponse(Struct):
    error: ErrorDetail
    type: Literal["error"] = "error"


MESSAGES = msgspec.json.Decoder(MessagesRequest)
COUNT_TOKENS = msgspec.json.Decoder(CountTokensRequest)
