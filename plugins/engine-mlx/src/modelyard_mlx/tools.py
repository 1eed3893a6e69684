"""Tool calls through the tokenizer's own parser, where mlx-lm found one for the model.

mlx-lm infers a parser from the chat template (``<tool_call>`` JSON, Mistral's ``[TOOL_CALLS]``,
pythonic, ...) and gives its markers. The core's ``toolcalls`` does the streaming (hold back text
from a marker on, turn it into tool-call deltas at the end); this format only parses the blocks.
Models without one fall back to the core's formats, named by the family's ``tool_parser``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import msgspec
from modelyard import toolcalls
from modelyard.schemas import ChatCompletionRequest


@dataclass(frozen=True)
class TokenizerToolFormat(toolcalls.TextFormat):
    end: str = ""
    parser: Any = None
    tools: Any = None

    def parse(self, text: str) -> tuple[str, list[toolcalls.Call]] | None:
        content: list[str] = []
        calls: list[toolcalls.Call] = []
        rest = text
        while (start := rest.find(self.marker)) >= 0:
            content.append(rest[:start])
            body_start = start + len(self.marker)
            end = rest.find(self.end, body_start) if self.end else -1
            body = rest[body_start : end if end >= 0 else None]
            rest = rest[end + len(self.end) :] if end >= 0 else ""
            try:
                parsed = self.parser(body, self.tools)
            except Exception:  # not a call after all: the text stays content
                return None
            for call in parsed if isinstance(parsed, list) else [parsed]:
                if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                    return None
                arguments = call.get("arguments", {})
                if not isinstance(arguments, str):
                    arguments = json.dumps(arguments, ensure_ascii=False)
                calls.append({"name": call["name"], "arguments": arguments})
        if not calls:
            return None
        return "".join(content) + rest, calls


def plan(
    request: ChatCompletionRequest, tokenizer: Any, tool_parser: str | None
) -> toolcalls.ToolPlan | None:
    found = toolcalls.plan(request, tool_parser)
    if found is None or not getattr(tokenizer, "has_tool_calling", False):
        return found
    tools = msgspec.to_builtins(request.tools or [])
    own = TokenizerToolFormat(
        name="mlx-lm",
        marker=tokenizer.tool_call_start,
        anywhere=True,
        end=tokenizer.tool_call_end or "",
        parser=tokenizer.tool_parser,
        tools=tools,
    )
    return dataclasses.replace(found, format=own)
