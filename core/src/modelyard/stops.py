"""Stop strings in streamed text, for engines that produce plain tokens (Transformers, MLX)."""

from __future__ import annotations


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
