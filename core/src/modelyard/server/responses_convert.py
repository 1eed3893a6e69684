"""OpenAI Responses ⇄ chat completions: the translation, kept pure (no I/O) so it is tested alone.

Input items become chat messages (``instructions`` a system message, ``function_call`` items an
assistant's tool calls, ``function_call_output`` items tool messages); the engine's chat chunks
come back as output items, streamed as Responses events (``ResponseWriter``). What a stored
response remembers for ``previous_response_id`` is its conversation as chat messages, without its
instructions: OpenAI does not carry instructions over to the next response either.
"""

from __future__ import annotations

import time
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
from .chat_bridge import checked
from .responses_schemas import (
    InputImage,
    InputItem,
    InputText,
    OutputText,
    ReasoningText,
    Refusal,
    ResponsesRequest,
)

Chunk = dict[str, Any]
Event = dict[str, Any]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _text_of(parts: str | list[Any] | None) -> str:
    if parts is None or isinstance(parts, str):
        return parts or ""
    pieces = []
    for part in parts:
        if isinstance(part, InputText | OutputText | ReasoningText):
            pieces.append(part.text)
        elif isinstance(part, Refusal):
            pieces.append(part.refusal)
    return "".join(pieces)


def _message(item: InputItem, where: str) -> ChatMessage:
    if item.role is None:
        raise InvalidRequest("a message item needs a role", param=f"{where}.role")
    # "developer" is OpenAI's new name for system; chat templates know only "system".
    role = "system" if item.role == "developer" else item.role
    if item.content is None or isinstance(item.content, str) or role != "user":
        return ChatMessage(role=role, content=_text_of(item.content))
    parts: list[ContentPart] = []
    for j, part in enumerate(item.content):
        if isinstance(part, InputImage):
            if not part.image_url:
                raise Unsupported(
                    "images are taken by image_url (an http(s) or data: URL); file ids need OpenAI's file store",
                    param=f"{where}.content[{j}].image_url",
                )
            parts.append(ImagePart(ImageURL(part.image_url, part.detail)))
        else:
            parts.append(TextPart(_text_of([part])))
    if all(isinstance(part, TextPart) for part in parts):
        return ChatMessage(
            role=role, content="".join(p.text for p in parts if isinstance(p, TextPart))
        )
    return ChatMessage(role=role, content=parts)


def _need(item: InputItem, where: str, *fields: str) -> None:
    for field in fields:
        if getattr(item, field) is None:
            raise InvalidRequest(f"a {item.type} item needs `{field}`", param=f"{where}.{field}")


def input_messages(items: str | list[InputItem]) -> list[ChatMessage]:
    """The conversation that ``input`` adds, as chat messages."""
    if isinstance(items, str):
        return [ChatMessage(role="user", content=items)]
    out: list[ChatMessage] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if item.type == "message":
            out.append(_message(item, where))
        elif item.type == "function_call":
            _need(item, where, "call_id", "name", "arguments")
            call = {
                "id": item.call_id,
                "type": "function",
                "function": {"name": item.name, "arguments": item.arguments},
            }
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                # Parallel calls (and a call after the assistant's text) are one chat turn.
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
        elif item.type == "function_call_output":
            _need(item, where, "call_id", "output")
            out.append(
                ChatMessage(role="tool", content=_text_of(item.output), tool_call_id=item.call_id)
            )
        # Reasoning items are the model's own notes of an earlier turn; engines take none back.
    return out


def input_items(items: str | list[InputItem]) -> list[dict[str, Any]]:
    """The input as OpenAI lists it back (``/input_items``): typed items with ids, text content
    as parts."""
    if isinstance(items, str):
        items = [InputItem(role="user", content=items)]
    listed = []
    for item in items:
        plain = msgspec.to_builtins(item)
        plain.setdefault("type", "message")
        if isinstance(item.content, str):
            kind = "output_text" if item.role == "assistant" else "input_text"
            plain["content"] = [{"type": kind, "text": item.content}]
        prefix = {"message": "msg", "function_call": "fc", "reasoning": "rs"}.get(item.type, "fco")
        plain.setdefault("id", new_id(prefix))
        if item.type != "reasoning":
            plain.setdefault("status", "completed")
        listed.append(plain)
    return listed


def _tools(body: ResponsesRequest) -> list[Tool] | None:
    if body.tools is None:
        return None
    tools = []
    for i, tool in enumerate(body.tools):
        if tool.type != "function":
            raise Unsupported(
                f"tool type {tool.type!r} is one of OpenAI's hosted tools, which local models do "
                "not have; declare a function tool",
                param=f"tools[{i}].type",
            )
        if not tool.name:
            raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].name")
        plain = {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
            "strict": tool.strict,
        }
        try:
            function = msgspec.convert(plain, FunctionDef)
        except msgspec.ValidationError as exc:
            raise InvalidRequest(
                f"invalid tool {tool.name!r}: {exc}", param=f"tools[{i}]"
            ) from None
        tools.append(Tool(function))
    return tools


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict):
        if choice.get("type") != "function" or not choice.get("name"):
            raise Unsupported(
                'tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}',
                param="tool_choice",
            )
        return {"type": "function", "function": {"name": choice["name"]}}
    return choice


def _response_format(body: ResponsesRequest) -> ResponseFormat | None:
    form = body.text.format if body.text is not None else None
    if form is None or form.type == "text":
        return None
    if form.type == "json_object":
        return ResponseFormat("json_object")
    if form.schema is None:
        raise InvalidRequest("a json_schema format needs its `schema`", param="text.format.schema")
    schema = JSONSchemaFormat(form.name or "response", form.schema, form.description, form.strict)
    return ResponseFormat("json_schema", schema)


def to_chat(body: ResponsesRequest, history: list[ChatMessage]) -> ChatCompletionRequest:
    """The chat request for a Responses request that follows ``history`` (from the stored
    ``previous_response_id``, empty without one)."""
    if body.background:
        raise Unsupported("background responses are not supported", param="background")
    messages = list(history) + input_messages(body.input)
    if body.instructions:
        messages.insert(0, ChatMessage(role="system", content=body.instructions))
    if not messages:
        raise InvalidRequest("input is empty: send a string or at least one item", param="input")
    chat = ChatCompletionRequest(
        model=body.model,
        messages=messages,
        max_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stream=body.stream,
        tools=_tools(body),
        tool_choice=_tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body),
    )
    return checked(chat)


class ResponseWriter:
    """Turns one generation's chat chunks into output items and Responses stream events.

    One item is open at a time: an assistant message (its one output_text part), a reasoning item,
    or a function call (one per OpenAI tool-call ``index``). Every event carries a
    ``sequence_number`` counting from 0."""

    def __init__(self, body: ResponsesRequest) -> None:
        self.body = body
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.open: str | None = None
        self.sequence = 0
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    # -- the response object --

    def response(self, status: str) -> dict[str, Any]:
        body = self.body
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        usage = None
        if self.usage is not None:
            prompt = int(self.usage.get("prompt_tokens") or 0)
            completion = int(self.usage.get("completion_tokens") or 0)
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + completion,
            }
        form = body.text.format if body.text is not None and body.text.format else None
        text = {"format": _plain(form) if form is not None else {"type": "text"}}
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": body.model,
            "output": [dict(item) for item in self.output] if status != "in_progress" else [],
            "usage": usage,
            "error": None,
            "incomplete_details": incomplete,
            "instructions": body.instructions,
            "max_output_tokens": body.max_output_tokens,
            "temperature": body.temperature,
            "top_p": body.top_p,
            "tools": [_plain(tool) for tool in body.tools or ()],
            "tool_choice": body.tool_choice if body.tool_choice is not None else "auto",
            "parallel_tool_calls": body.parallel_tool_calls is not False,
            "text": text,
            "previous_response_id": body.previous_response_id,
            "store": body.store,
            "metadata": body.metadata or {},
        }

    def status(self) -> str:
        return "incomplete" if self.finish_reason == "length" else "completed"

    # -- events --

    def _event(self, type_: str, **fields: Any) -> Event:
        event = {"type": type_, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[Event]:
        snapshot = self.response("in_progress")
        return [
            self._event("response.created", response=snapshot),
            self._event("response.in_progress", response=snapshot),
        ]

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.output[-1]["id"], "output_index": len(self.output) - 1}

    def _close(self) -> list[Event]:
        if self.open is None:
            return []
        kind, self.open = self.open, None
        item = self.output[-1]
        item["status"] = "completed" if self.status() == "completed" else "incomplete"
        events: list[Event] = []
        if kind == "message" or kind == "reasoning":
            part = item["content"][0]
            done = (
                "response.output_text.done" if kind == "message" else "response.reasoning_text.done"
            )
            extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
            events.append(
                self._event(done, **self._where(), content_index=0, text=part["text"], **extra)
            )
            events.append(
                self._event(
                    "response.content_part.done", **self._where(), content_index=0, part=dict(part)
                )
            )
        else:
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **self._where(),
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
        if kind == "reasoning":
            item.pop("status")  # reasoning items carry no status
        events.append(
            self._event(
                "response.output_item.done", output_index=len(self.output) - 1, item=_copy(item)
            )
        )
        return events

    def _add(self, key: str, item: dict[str, Any]) -> list[Event]:
        events = self._close()
        self.open = key
        self.output.append(item)
        added = self._event(
            "response.output_item.added", output_index=len(self.output) - 1, item=_copy(item)
        )
        return [*events, added]

    def _text(self, kind: str, piece: str) -> list[Event]:
        events: list[Event] = []
        if self.open != kind:
            item: dict[str, Any]
            if kind == "message":
                item = {
                    "id": new_id("msg"),
                    "type": "message",
                    "status": "in_progress",
                    "role": "assistant",
                    "content": [],
                }
                part: dict[str, Any] = {
                    "type": "output_text",
                    "text": "",
                    "annotations": [],
                    "logprobs": [],
                }
            else:
                item = {
                    "id": new_id("rs"),
                    "type": "reasoning",
                    "status": "in_progress",
                    "summary": [],
                    "content": [],
                }
                part = {"type": "reasoning_text", "text": ""}
            events += self._add(kind, item)
            item["content"].append(part)
            events.append(
                self._event(
                    "response.content_part.added", **self._where(), content_index=0, part=dict(part)
                )
            )
        self.output[-1]["content"][0]["text"] += piece
        delta = (
            "response.output_text.delta" if kind == "message" else "response.reasoning_text.delta"
        )
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        events.append(self._event(delta, **self._where(), content_index=0, delta=piece, **extra))
        return events

    def _tool_call(self, call: dict[str, Any], position: int) -> list[Event]:
        key = f"function_call:{call.get('index', position)}"
        function = call.get("function") or {}
        events: list[Event] = []
        if self.open != key:
            item = {
                "id": new_id("fc"),
                "type": "function_call",
                "status": "in_progress",
                "call_id": call.get("id") or new_id("call"),
                "name": function.get("name") or "",
                "arguments": "",
            }
            events += self._add(key, item)
        piece = function.get("arguments") or ""
        if piece:
            self.output[-1]["arguments"] += piece
            events.append(
                self._event("response.function_call_arguments.delta", **self._where(), delta=piece)
            )
        return events

    def feed(self, chunk: Chunk) -> list[Event]:
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one answer per response
            delta = choice.get("delta") or choice.get("message") or {}
            if delta.get("reasoning_content"):
                events += self._text("reasoning", delta["reasoning_content"])
            if delta.get("content"):
                events += self._text("message", delta["content"])
            for position, call in enumerate(delta.get("tool_calls") or ()):
                events += self._tool_call(call, position)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        return events

    def finish(self) -> list[Event]:
        events = self._close()
        status = self.status()
        final = "response.incomplete" if status == "incomplete" else "response.completed"
        return [*events, self._event(final, response=self.response(status))]

    def failed(self, code: str, message: str) -> list[Event]:
        body = self.response("failed")
        body["error"] = {"code": code, "message": message}
        return [self._event("response.failed", response=body)]

    def result(self) -> dict[str, Any]:
        """The whole response (call after the last ``feed``)."""
        self._close()
        return self.response(self.status())

    def answer_messages(self) -> list[ChatMessage]:
        """This response's output as the chat turn to remember for ``previous_response_id``."""
        text = "".join(
            item["content"][0]["text"] for item in self.output if item["type"] == "message"
        )
        calls = [
            {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            for item in self.output
            if item["type"] == "function_call"
        ]
        return [ChatMessage(role="assistant", content=text or None, tool_calls=calls or None)]


def _copy(item: dict[str, Any]) -> dict[str, Any]:
    copied = dict(item)
    if "content" in copied:
        copied["content"] = [dict(part) for part in copied["content"]]
    return copied


def _plain(struct: Any) -> dict[str, Any]:
    return msgspec.to_builtins(struct)
