"""The bounded in-memory store behind ``store`` and ``previous_response_id``.

A stored response keeps its body (for ``GET /v1/responses/{id}``) and its conversation as chat
messages (to continue from). The least recently used entry goes first once the store is full;
everything is lost when the server stops, which the 404 for an unknown id says.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

import msgspec

from ..errors import NotFound
from ..schemas import ChatMessage

DEFAULT_SIZE = 1000


class Stored(msgspec.Struct):
    response: dict[str, Any]
    messages: list[ChatMessage]
    inputs: list[dict[str, Any]] = []  # this response's own input items, with ids


class ResponseStore:
    def __init__(self, size: int | None = None) -> None:
        if size is None:
            raw = os.environ.get("MODELYARD_RESPONSES_STORE_SIZE", str(DEFAULT_SIZE))
            if not raw.strip().isdigit():
                raise ValueError(
                    f"MODELYARD_RESPONSES_STORE_SIZE must be a whole number of responses, got {raw!r}"
                )
            size = int(raw)
        self.size = max(size, 0)
        self._entries: OrderedDict[str, Stored] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, id: str, entry: Stored) -> None:
        self._entries[id] = entry
        self._entries.move_to_end(id)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def get(self, id: str, *, param: str | None = None) -> Stored:
        entry = self._entries.get(id)
        if entry is None:
            raise NotFound(
                f"response {id!r} not found: it was created with store=false, deleted, or is "
                f"no longer in this server's memory (it keeps the last {self.size} responses, "
                "until it restarts)",
                param=param,
                code="response_not_found",
            )
        self._entries.move_to_end(id)
        return entry

    def delete(self, id: str) -> None:
        self.get(id)
        del self._entries[id]
