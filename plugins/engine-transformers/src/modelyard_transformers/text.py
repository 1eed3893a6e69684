"""Turning tokens into streamed text: incremental detokenization (stop strings: ``modelyard.stops``)."""

from __future__ import annotations

from typing import Any

from modelyard.stops import StopMatcher

__all__ = ["Detokenizer", "StopMatcher"]


class Detokenizer:
    """Decodes a growing token list into text deltas.

    Decoding one token alone loses leading spaces and splits multi-byte characters, so each step
    decodes a short window that starts a few tokens back and emits only what it adds to the text
    already emitted; text that ends in an incomplete character (U+FFFD) waits for the next token.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token: int) -> str:
        self.ids.append(token)
        before = self._decode(self.ids[self.prefix_offset : self.read_offset])
        after = self._decode(self.ids[self.prefix_offset :])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            return after[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the very end)."""
        before = self._decode(self.ids[self.prefix_offset : self.read_offset])
        after = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return after[len(before) :] if after.startswith(before) else ""
