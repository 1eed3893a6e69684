"""Tool calls for engines whose output is plain text (llama.cpp without a native parser, transformers).

Two halves, both engine-independent:
- forcing a call: ``tool_choice`` "required" or a named function becomes a JSON schema the engine's
  grammar (llama.cpp's ``response_format``) holds the output to: ``{"name": ..., "arguments": ...}``;
- finding calls in text: the family's ``tool_parser`` names the format the model writes (Hermes/Qwen
  ``<tool_call>{...}</tool_call>`` blocks, Llama-3 bare JSON objects); ``with_tool_calls`` turns an
  engine's chunk stream into one that carries OpenAI tool-call deltas and ``finish_reason``
  "tool_calls". Text that only looks like a call (invalid JSON, unknown shape) stays content.

An engine that already returns ``tool_calls`` passes through untouched: its content has no markers.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidRequest
from .schemas import ChatCompletionRequest, Tool

Chunk = dict[str, Any]
Call = dict[str, Any]  # {"name": str, "arguments": str (JSON text)}


@dataclass(frozen=True)
class TextFormat:
    """How a model writes tool calls into its text."""

    name: str
    marker: str  # the text that opens a call
    anywhere: bool  # the marker may follow other text (else it opens the output)

    def parse(self, text: str) -> tuple[str, list[Call]] | None:
        """(the content outside the calls, the calls), or None when the text holds no valid call."""
        if self.name == "hermes":
            return _parse_hermes(text)
        # Llama 3.x may open a call with its python tag.
        return _parse_json_calls(text.strip().removeprefix("<|python_tag|>"))


# Families name their parser as vLLM and Xinference do; these map to the two text formats.
FORMATS = {
    "hermes": TextFormat("hermes", "<tool_call>", anywhere=True),
    "llama3": TextFormat("llama3", "{", anywhere=False),
    "json": TextFormat("json", "", anywhere=False),  # a forced call: the whole output is the call
}
ALIASES = {"qwen": "hermes", "qwen25": "hermes", "qwen3": "hermes", "llama3_json": "llama3"}
DEFAULT_FORMAT = "hermes"


@dataclass(frozen=True)
class ToolPlan:
    """What a chat request with tools asks of a text-only engine."""

    format: TextFormat
    # The JSON schema the output must follow when a call is forced, else None.
    forced_schema: dict[str, Any] | None = None
    parallel: bool = True

    def response_format(self) -> dict[str, Any]:
        assert self.forced_schema is not None
        return {
            "type": "json_schema",
            "json_schema": {"name": "tool_call", "schema": self.forced_schema},
        }


def plan(request: ChatCompletionRequest, tool_parser: str | None) -> ToolPlan | None:
    """None when the request has no tools or forbids calling them; raises 400 for a bad tool_choice."""
    tools = request.tools or []
    if not tools or request.tool_choice == "none":
        return None
    name = ALIASES.get(tool_parser or "", tool_parser or DEFAULT_FORMAT)
    text_format = FORMATS.get(name, FORMATS[DEFAULT_FORMAT])
    parallel = request.parallel_tool_calls is not False
    choice = request.tool_choice
    if choice is None or choice == "auto":
        return ToolPlan(text_format, parallel=parallel)
    if request.response_format is not None and request.response_format.type != "text":
        raise InvalidRequest(
            "tool_choice forcing a call cannot be combined with response_format; drop one",
            param="response_format",
        )
    if choice == "required":
        chosen = tools
    else:
        wanted = _named_function(choice)
        chosen = [tool for tool in tools if tool.function.name == wanted]
        if not chosen:
            names = ", ".join(tool.function.name for tool in tools)
            raise InvalidRequest(
                f"tool_choice names function {wanted!r}, which is not among the tools ({names})",
                param="tool_choice",
            )
    schemas = [_call_schema(tool) for tool in chosen]
    schema = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
    return ToolPlan(FORMATS["json"], forced_schema=schema, parallel=False)


def _named_function(choice: dict[str, Any]) -> str:
    function = choice.get("function") if choice.get("type", "function") == "function" else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            'tool_choice must be "none", "auto", "required" or '
            '{"type": "function", "function": {"name": ...}}',
            param="tool_choice",
        )
    return name


def _call_schema(tool: Tool) -> dict[str, Any]:
    parameters = tool.function.parameters or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": tool.function.name}, "arguments": parameters},
        "required": ["name", "arguments"],
    }


async def with_tool_calls(
    chunks: AsyncIterator[Chunk], tool_plan: ToolPlan
) -> AsyncGenerator[Chunk]:
    """The engine's chat chunks, with calls written as text turned into tool-call deltas.

    Content streams as it comes until a call may be starting; from there it is held back and parsed
    when the choice finishes. Held text that is no valid call is released as content."""
    choices: dict[int, _Choice] = {}
    try:
        async for chunk in chunks:
            for choice in chunk.get("choices") or ():
                state = choices.setdefault(choice.get("index", 0), _Choice(tool_plan))
                delta = choice.get("delta")
                if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                    delta["content"] = state.feed(delta["content"])
                    if not delta["content"]:
                        del delta["content"]
                if choice.get("finish_reason"):
                    state.finish(choice)
            if not _held_back_only(chunk):
                yield chunk
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:  # closing this stream stops the engine's generation now
            await close()


def _held_back_only(chunk: Chunk) -> bool:
    """A chunk left with nothing to say once its text is held back (no need to send it)."""
    if set(chunk) - {"id", "created", "object", "model", "system_fingerprint", "choices"}:
        return False
    choices = chunk.get("choices") or ()
    return bool(choices) and all(
        not choice.get("delta") and not choice.get("finish_reason") and not choice.get("logprobs")
        for choice in choices
    )


@dataclass
class _Choice:
    plan: ToolPlan
    seen: str = ""  # every content character so far
    held: str = ""  # content not yet released: a call, or what may become one
    calls: list[Call] = field(default_factory=list)

    def feed(self, text: str) -> str:
        # Only the new text and a marker's length before it can open a call: no rescan of it all.
        window = self.seen[-len(self.plan.format.marker) :] + text
        self.seen += text
        if self.held or self._may_open(window):
            self.held += text
            return self._release_if_not_a_call()
        return text

    def _may_open(self, window: str) -> bool:
        marker = self.plan.format.marker
        if not self.plan.format.anywhere:
            stripped = self.seen.lstrip()
            return marker == "" or stripped.startswith(marker) or not stripped
        return marker in window or _prefix_overlap(window, marker) > 0

    def _release_if_not_a_call(self) -> str:
        marker = self.plan.format.marker
        if not self.plan.format.anywhere:
            stripped = self.held.lstrip()
            if stripped and not stripped.startswith(marker):
                released, self.held = self.held, ""
                return released
            return ""
        start = self.held.find(marker)
        if start < 0:
            keep = _prefix_overlap(self.held, marker)
            released, self.held = (
                self.held[: len(self.held) - keep],
                self.held[len(self.held) - keep :],
            )
            return released
        released, self.held = self.held[:start], self.held[start:]
        return released

    def finish(self, choice: dict[str, Any]) -> None:
        """At the end of the choice: the held text becomes calls, or goes out as content."""
        held, self.held = self.held, ""
        parsed = self.plan.format.parse(held) if held.strip() else None
        delta = choice.setdefault("delta", {})
        if parsed is None or not parsed[1]:
            if held:
                delta["content"] = delta.get("content", "") + held
            return
        content, calls = parsed
        if not self.plan.parallel:
            calls = calls[:1]
        if content.strip():
            delta["content"] = delta.get("content", "") + content
        delta["tool_calls"] = [
            {
                "index": len(self.calls) + position,
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call["name"], "arguments": call["arguments"]},
            }
            for position, call in enumerate(calls)
        ]
        self.calls.extend(calls)
        if choice.get("finish_reason") == "stop":
            choice["finish_reason"] = "tool_calls"


def _prefix_overlap(text: str, marker: str) -> int:
    """The length of the longest end of ``text`` that begins ``marker`` (a marker cut mid-stream)."""
    for size in range(min(len(marker) - 1, len(text)), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def _parse_hermes(text: str) -> tuple[str, list[Call]] | None:
    calls: list[Call] = []
    for match in _HERMES.finditer(text):
        call = _as_call(match.group(1))
        if call is None:
            return None
        calls.append(call)
    if not calls:
        return None
    return _HERMES.sub("", text).strip(), calls


def _parse_json_calls(text: str) -> tuple[str, list[Call]] | None:
    """One JSON object, a list of them, or objects separated by ";" (Llama 3.x)."""
    try:
        value = json.loads(text)
    except ValueError:
        parts = [part for part in text.split(";") if part.strip()]
        values = [_loads(part) for part in parts]
        if len(parts) < 2 or any(v is None for v in values):
            return None
        value = values
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return "", [call for call in calls if call is not None]


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _as_call(value: Any) -> Call | None:
    if isinstance(value, str):
        value = _loads(value)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):  # some models write the arguments as a JSON string
        arguments = _loads(arguments)
    if not isinstance(arguments, dict):
        return None
    return {"name": value["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}
