"""Handing work from engine threads to the event loop with one wakeup for many items.

``loop.call_soon_threadsafe`` writes to the loop's wakeup pipe on every call: an engine thread
that hands over each token that way wakes the loop once per token, and the wakeup was most of a
runner's own CPU per token. ``LoopHandoff.post`` queues the call instead and wakes the loop only
when nothing is queued yet, so the tokens produced while the loop is busy (or asleep) run together
in one pass, in the order they were posted, across every thread that posts.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

T = TypeVar("T")


class LoopHandoff:
    """One per event loop (engine plugins keep one per loaded model)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._queued: collections.deque[tuple[Callable[[Any], object], Any]] = collections.deque()
        self._lock = threading.Lock()
        self._woken = False

    def post(self, callback: Callable[[Any], object], item: Any) -> None:
        """Run ``callback(item)`` on the loop, soon. Raises ``RuntimeError`` once the loop is closed."""
        with self._lock:
            self._queued.append((callback, item))
            if self._woken:
                return  # the pass already scheduled will run this one too
            self._woken = True
        try:
            self.loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            with self._lock:
                self._woken = False
            raise

    def _run(self) -> None:
        with self._lock:
            queued, self._queued = self._queued, collections.deque()
            self._woken = False
        for callback, item in queued:
            callback(item)


_HANDOFFS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopHandoff] = (
    weakref.WeakKeyDictionary()
)


def handoff_for(loop: asyncio.AbstractEventLoop) -> LoopHandoff:
    """The loop's shared handoff: every engine thread posting to one loop shares its wakeups.
    Call it from the loop's own thread (where requests start), not from engine threads."""
    handoff = _HANDOFFS.get(loop)
    if handoff is None:
        handoff = _HANDOFFS[loop] = LoopHandoff(loop)
    return handoff


async def received(stream: MemoryObjectReceiveStream[T]) -> AsyncIterator[T]:
    """``async for item in stream`` without anyio's checkpoint (one more pass of the loop) for an
    item that is already there: a batch of handed-over tokens is forwarded in one go."""
    while True:
        try:
            item = stream.receive_nowait()
        except anyio.WouldBlock:
            try:
                item = await stream.receive()
            except anyio.EndOfStream:
                return
        except anyio.EndOfStream:
            return
        yield item
