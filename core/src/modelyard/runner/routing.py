"""Which replica of a model answers a request: the least loaded, unless one already holds its prefix.

Every engine keeps a prefix cache (llama.cpp's prompt cache, vLLM's and SGLang's prefix caching), so
a request whose prompt starts like an earlier one costs less on the replica that served that one:
multi-turn chats resend the whole conversation, and agents share long system prompts. The router
remembers which replica last served each prompt prefix and sends a request to the replica holding
its longest known prefix, as long as that replica is not much busier than the least loaded one
(``balance`` requests more); otherwise load wins, so one hot prefix cannot pile onto one replica.

Prefixes are chained hashes of fixed-size blocks of the prompt text (the router runs before
tokenization, and the same text always gives the same blocks), kept in a bounded LRU map.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Mapping

BLOCK_CHARS = 128  # about 30 tokens: finer blocks cost hashing and memory, coarser miss prefixes
MAX_BLOCKS = 256  # prompts beyond ~32k characters share their first 256 blocks' affinity
DEFAULT_BALANCE = 2
DEFAULT_CAPACITY = 1 << 16  # remembered prefixes (a few MB)


def prefix_keys(text: str, block: int = BLOCK_CHARS, limit: int = MAX_BLOCKS) -> list[int]:
    """One key per whole block of ``text``: key ``i`` stands for ``text[: (i + 1) * block]``."""
    keys: list[int] = []
    chained = 0
    for start in range(0, min(len(text) // block, limit) * block, block):
        chained = hash((chained, text[start : start + block]))
        keys.append(chained)
    return keys


class ReplicaRouter:
    """Picks a replica per request; one per model, used from the event loop (no locking)."""

    def __init__(self, *, balance: int = DEFAULT_BALANCE, capacity: int = DEFAULT_CAPACITY) -> None:
        self.balance = balance
        self.capacity = capacity
        self._owner: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._turn = itertools.count()  # rotates ties between equally loaded replicas
        self.affinity_hits = 0  # requests sent to the replica holding their prefix

    def choose(self, loads: Mapping[str, int], prompt: str = "") -> str:
        """The replica for a request; ``loads``: each live replica's requests in flight."""
        if not loads:
            raise ValueError("no replica to route to")
        keys = prefix_keys(prompt)
        least = min(loads.values())
        chosen = self._holder(keys, loads, least)
        if chosen is None:
            idle = sorted(name for name, load in loads.items() if load == least)
            chosen = idle[next(self._turn) % len(idle)]
        else:
            self.affinity_hits += 1
        self._remember(keys, chosen)
        return chosen

    def forget(self, replica: str) -> None:
        """Drop what a stopped replica held (its cache is gone with it)."""
        for key in [key for key, owner in self._owner.items() if owner == replica]:
            del self._owner[key]

    def _holder(self, keys: list[int], loads: Mapping[str, int], least: int) -> str | None:
        for key in reversed(keys):  # the longest known prefix first
            owner = self._owner.get(key)
            if owner is not None and owner in loads:
                return owner if loads[owner] <= least + self.balance else None
        return None

    def _remember(self, keys: list[int], replica: str) -> None:
        for key in keys:
            self._owner[key] = replica
            self._owner.move_to_end(key)
        while len(self._owner) > self.capacity:
            self._owner.popitem(last=False)
