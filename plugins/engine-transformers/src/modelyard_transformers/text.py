"""Turning tokens into streamed text: incremental detokenization and stop strings."""

from __future__ import annotations

from typing import Any


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


class StopMatcher:
    """Finds stop strings in streamed text, holding back any tail that may start one.

    ``feed`` returns the text that is safe to send and whether a stop string was reached; the
    stop string itself is never sent (OpenAI's behaviour).
    """

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.text = ""
        self.sent = 0

    def _held_back(self) -> int:
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(self.text) - self.sent), hold, -1):
                if self.text.endswith(stop[:k]):
                    hold = k
                    break
        return hold

    def feed(self, delta: str) -> tuple[str, bool]:
        self.text += delta
        if not self.stops:
            out, self.sent = self.text[self.sent :], len(self.text)
            return out, False
        # The stop that completes first wins (as if the text had come one character at a time).
        found = [(i + len(s), i) for s in self.stops if (i := self.text.find(s, self.sent)) >= 0]
        if found:
            start = min(found)[1]
            out, self.sent = self.text[self.sent : start], start
            return out, True
        end = len(self.text) - self._held_back()
        out, self.sent = self.text[self.sent : end], end
        return out, False

    def flush(self) -> str:
        out, self.sent = self.text[self.sent :], len(self.text)
        return out
