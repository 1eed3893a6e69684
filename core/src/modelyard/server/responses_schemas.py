"""OpenAI Responses API bodies (``POST /v1/responses``), validated once at the HTTP edge.

An input item is one flat Struct whose ``type`` defaults to ``"message"``: OpenAI's "easy" input
messages (``{"role", "content"}``) carry no ``type``, which a msgspec tagged union cannot express;
the fields each type needs are checked by the translation, naming the item's path. The reply
Structs describe what the routes build (as dicts) for ``/openapi.json``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import Struct

from ..schemas import PositiveInt, Probability, Temperature


class InputText(Struct, tag="input_text", tag_field="type"):
    text: str


class OutputText(Struct, tag="output_text", tag_field="type", omit_defaults=True):
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class InputImage(Struct, tag="input_image", tag_field="type", omit_defaults=True):
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high"] = "auto"


class Refusal(Struct, tag="refusal", tag_field="type"):
    refusal: str


class ReasoningText(Struct, tag="reasoning_text", tag_field="type"):
    text: str


ContentPart = InputText | OutputText | InputImage | Refusal | ReasoningText


class InputItem(Struct, kw_only=True, omit_defaults=True):
    """A message, a function call the model made, the output of one, or a reasoning item."""

    type: Literal["message", "function_call", "function_call_output", "reasoning"] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | list[ContentPart] | None = None
    id: str | None = None
    status: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | list[ContentPart] | None = None
    summary: list[dict[str, Any]] | None = None
    encrypted_content: str | None = None


class FunctionTool(Struct, kw_only=True, omit_defaults=True):
    type: str  # only "function": OpenAI's hosted tools (web_search, file_search...) are refused
    name: str | None = None
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class TextFormat(Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(Struct, kw_only=True, omit_defaults=True):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(Struct, kw_only=True, omit_defaults=True):
    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    max_output_tokens: PositiveInt | None = None
    temperature: Temperature | None = None
    top_p: Probability | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextConfig | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None
    reasoning: dict[str, Any] | None = None
    background: bool | None = None
    user: str | None = None


# -- replies (documentation types: the routes build the same shapes as dicts) --


class OutputMessage(Struct, tag="message", tag_field="type"):
    id: str
    status: Literal["in_progress", "completed", "incomplete"]
    role: Literal["assistant"]
    content: list[OutputText]


class FunctionCall(Struct, tag="function_call", tag_field="type"):
    id: str
    call_id: str
    name: str
    arguments: str
    status: Literal["in_progress", "completed", "incomplete"]


class Reasoning(Struct, tag="reasoning", tag_field="type"):
    id: str
    summary: list[dict[str, Any]]
    content: list[ReasoningText]


class TokenDetails(Struct, omit_defaults=True):
    cached_tokens: int = 0
    reasoning_tokens: int = 0


class ResponseUsage(Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: TokenDetails
    output_tokens_details: TokenDetails


class IncompleteDetails(Struct):
    reason: str


class ResponseError(Struct):
    code: str
    message: str


class Response(Struct):
    id: str
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[OutputMessage | FunctionCall | Reasoning]
    usage: ResponseUsage | None
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    temperature: float | None
    top_p: float | None
    tools: list[FunctionTool]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    text: dict[str, Any]
    previous_response_id: str | None
    store: bool
    metadata: dict[str, str]
    object: Literal["response"] = "response"


class StreamEvent(Struct):
    """One server-sent event: ``event: <type>`` and this object as ``data``. ``type`` is one of
    response.created, response.in_progress, response.output_item.added,
    response.content_part.added, response.output_text.delta, response.output_text.done,
    response.content_part.done, response.output_item.done, response.function_call_arguments.delta,
    response.function_call_arguments.done, response.reasoning_text.delta,
    response.reasoning_text.done, response.completed, response.incomplete, response.failed."""

    type: str
    sequence_number: int
    response: Response | None = None
    output_index: int | None = None
    content_index: int | None = None
    item_id: str | None = None
    item: OutputMessage | FunctionCall | Reasoning | None = None
    part: OutputText | ReasoningText | None = None
    delta: str | None = None
    text: str | None = None
    arguments: str | None = None


class DeletedResponse(Struct):
    id: str
    deleted: bool
    object: Literal["response"] = "response"


RESPONSES = msgspec.json.Decoder(ResponsesRequest)


class InputItemList(Struct):
    data: list[InputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"
