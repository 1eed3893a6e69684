"""Tool calls through SGLang's own function-call parsers, as its OpenAI layer uses them.

The model's detector (``FunctionCallParser`` with the launch's ``tool_call_parser``: hermes, qwen25,
llama3, mistral, pythonic, ...) gives two things: the grammar that holds a forced call
(``tool_choice`` "required" or a named function) in the model's own call format, and the streaming
parse of the generated text into content and call deltas. A forced call whose detector has no
format of its own is a JSON array of calls, held by a JSON schema and read by SGLang's
``JsonArrayParser``, as in SGLang's server. Imports sglang: used only in the runner.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import msgspec
from modelyard.engine import Chunk
from modelyard.schemas import ChatCompletionRequest


def has_detector(parser_name: str | None) -> bool:
    """Whether SGLang parses this tool-call format itself."""
    if parser_name is None:
        return False
    from sglang.srt.function_call.function_call_parser import FunctionCallParser

    return parser_name in FunctionCallParser.ToolCallParserEnum


@dataclass
class SglangToolCalls:
    """SGLang's parser for one chat request with tools, and the grammar it asks for."""

    parser: Any  # FunctionCallParser, or JsonArrayParser for a forced call written as JSON
    tools: list[Any]  # SGLang's Tool objects
    constraint: tuple[str, str] | None  # (sampling parameter, its value) holding a forced call
    parallel: bool

    @classmethod
    def for_request(
        cls, request: ChatCompletionRequest, parser_name: str, tokenizer: Any
    ) -> SglangToolCalls:
        """The request's tools and ``tool_choice`` (already checked by the core's plan) in SGLang's
        types; a named function narrows the tools to that one, as SGLang's server does."""
        from sglang.srt.entrypoints.openai.protocol import Tool, ToolChoice
        from sglang.srt.function_call.function_call_parser import FunctionCallParser
        from sglang.srt.function_call.json_array_parser import JsonArrayParser

        tools = [Tool.model_validate(msgspec.to_builtins(t)) for t in request.tools or ()]
        choice: Any = request.tool_choice or "auto"
        if isinstance(choice, dict):
            choice = ToolChoice.model_validate(choice)
            tools = [t for t in tools if t.function.name == choice.function.name]
        parallel = request.parallel_tool_calls is not False
        parser: Any = FunctionCallParser(
            tools, parser_name, tokenizer=tokenizer, tool_choice=choice
        )
        found = parser.get_structure_constraint(choice, parallel_tool_calls=parallel)
        constraint = None
        if found is not None:
            kind, value = found
            dumped = value.model_dump(by_alias=True) if hasattr(value, "model_dump") else value
            constraint = (kind, dumped if isinstance(dumped, str) else json.dumps(dumped))
            forced = choice != "auto"
            if kind == "json_schema" and forced and not parser.owns_tool_format():
                parser = JsonArrayParser()
        return cls(parser, tools, constraint, parallel)

    def _feed(self, text: str) -> tuple[str, list[Any]]:
        if hasattr(self.parser, "parse_stream_chunk"):
            return self.parser.parse_stream_chunk(text)
        result = self.parser.parse_streaming_increment(text, self.tools)
        return result.normal_text, list(result.calls)

    def _end(self) -> tuple[str, list[Any]]:
        if hasattr(self.parser, "parse_stream_end"):
            return self.parser.parse_stream_end()
        result = self.parser.finish(self.tools)
        return result.normal_text, list(result.calls)

    async def stream(self, chunks: AsyncGenerator[Chunk]) -> AsyncGenerator[Chunk]:
        """The chat chunks with their text parsed by SGLang: content as the detector releases it,
        each call as OpenAI tool-call deltas (id and name first, then argument pieces), and
        ``finish_reason`` "tool_calls" when the model stopped after calling."""
        called = False
        async with aclosing(chunks) as stream:
            async for chunk in stream:
                choice = chunk["choices"][0]
                delta = choice["delta"]
                text, calls = self._feed(delta.pop("content", None) or "")
                if choice.get("finish_reason"):
                    rest, more = self._end()
                    text, calls = text + rest, [*calls, *more]
                if text:
                    delta["content"] = text
                if deltas := [self._delta(call) for call in calls if self._wanted(call)]:
                    delta["tool_calls"] = deltas
                    called = True
                if called and choice.get("finish_reason") == "stop":
                    choice["finish_reason"] = "tool_calls"
                if delta or choice.get("finish_reason") or "usage" in chunk:
                    yield chunk

    def _wanted(self, call: Any) -> bool:
        # parallel_tool_calls=false: the first call only (a forced call's grammar already stops there).
        return self.parallel or int(call.tool_index) == 0

    @staticmethod
    def _delta(call: Any) -> dict[str, Any]:
        function: dict[str, Any] = {"arguments": call.parameters or ""}
        out: dict[str, Any] = {"index": int(call.tool_index), "function": function}
        if call.name:
            out.update(id=f"call_{uuid.uuid4().hex[:24]}", type="function")
            function["name"] = call.name
        return out
