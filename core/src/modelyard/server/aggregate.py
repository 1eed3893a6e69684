"""Fold a stream of chunks into the one response a non-streaming client expects.

Engines only ever stream (engine.py); a client that did not ask to stream gets the chunks merged:
text and reasoning concatenated per choice, tool-call deltas merged by their ``index`` (the id,
type and name arrive once, the arguments in pieces), the last non-null ``finish_reason``, and the
usage of the last chunk that carried one.
"""

from __future__ import annotations

import uuid
from typing import Any

Chunk = dict[str, Any]


class _ChatChoice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.logprobs: list[Any] | None = None
        self.finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or choice.get("message") or {}
        if delta.get("role"):
            self.role = delta["role"]
        if delta.get("content"):
            self.content.append(delta["content"])
        if delta.get("reasoning_content"):
            self.reasoning.append(delta["reasoning_content"])
        for position, call in enumerate(delta.get("tool_calls") or ()):
            self._add_tool_call(call, position)
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and logprobs.get("content"):
            self.logprobs = [*(self.logprobs or []), *logprobs["content"]]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _add_tool_call(self, call: dict[str, Any], position: int) -> None:
        index = call.get("index", position)
        merged = self.tool_calls.setdefault(
            index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            merged["id"] = call["id"]
        if call.get("type"):
            merged["type"] = call["type"]
        function = call.get("function") or {}
        if function.get("name") and not merged["function"]["name"]:
            merged["function"]["name"] = function["name"]
        if function.get("arguments"):
            merged["function"]["arguments"] += function["arguments"]

    def result(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role,
            "content": "".join(self.content) if self.content else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            calls = [self.tool_calls[i] for i in sorted(self.tool_calls)]
            for call in calls:
                # OpenAI clients need an id to answer a call with; not every engine streams one.
                call["id"] = call["id"] or f"call_{uuid.uuid4().hex[:24]}"
            message["tool_calls"] = calls
        elif message["content"] is None:
            message["content"] = ""
        logprobs = {"content": self.logprobs} if self.logprobs is not None else None
        return {
            "index": self.index,
            "message": message,
            "logprobs": logprobs,
            "finish_reason": self.finish_reason,
        }


class _TextChoice:
    def __init__(self, index: int) -> None:
        self.index = index
        self.text: list[str] = []
        self.logprobs: dict[str, list[Any]] | None = None
        self.finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        if choice.get("text"):
            self.text.append(choice["text"])
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            merged = self.logprobs if self.logprobs is not None else {}
            for key, values in logprobs.items():
                if isinstance(values, list):
                    merged.setdefault(key, []).extend(values)
            self.logprobs = merged
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def result(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": "".join(self.text),
            "logprobs": self.logprobs,
            "finish_reason": self.finish_reason,
        }


class Folder:
    """Accumulates chunks of one generation; ``result`` builds the final response body."""

    def __init__(self, kind: str) -> None:
        if kind not in ("chat", "text"):
            raise ValueError(f"unknown completion kind {kind!r}")
        self.kind = kind
        self.choices: dict[int, _ChatChoice | _TextChoice] = {}
        self.usage: dict[str, Any] | None = None
        self.extras: dict[str, Any] = {}

    def add(self, chunk: Chunk) -> None:
        for position, choice in enumerate(chunk.get("choices") or ()):
            index = choice.get("index", position)
            if index not in self.choices:
                self.choices[index] = (
                    _ChatChoice(index) if self.kind == "chat" else _TextChoice(index)
                )
            self.choices[index].add(choice)
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        if chunk.get("system_fingerprint"):
            self.extras["system_fingerprint"] = chunk["system_fingerprint"]

    def result(self, *, id: str, created: int, model: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": created,
            "model": model,
            "choices": [self.choices[i].result() for i in sorted(self.choices)],
        }
        body.update(self.extras)
        if self.usage is not None:
            body["usage"] = self.usage
        return body
