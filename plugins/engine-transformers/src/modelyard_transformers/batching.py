"""Gathering concurrent small requests into one call of a batch function (encode, predict).

Each request submits its items and awaits its slice of the results. One worker task per batcher
takes every item waiting (up to ``max_items``), calls the blocking batch function once in a worker
thread, and hands each request its results; requests that arrive while a batch runs are gathered
for the next (dynamic batching, as TEI and Infinity do).

An idle worker does not start on the first request of a burst: it waits until no request has come
for ``wait_s`` (or ``max_items`` are waiting, or ``max_wait_s`` has passed since the first one).
Small batches cost far more per item than big ones on a CPU (MiniLM, 1 thread: ~20 ms for one
sentence, ~7 ms a sentence in a batch of 64), and a batch started on a burst's first request
makes the rest of the burst wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anyio.to_thread

Item = TypeVar("Item")


@dataclass(eq=False)
class _Request(Generic[Item]):
    items: list[Item]
    future: asyncio.Future[list[Any]]


@dataclass
class MicroBatchStats:
    items: Counter[int] = field(default_factory=Counter)  # batch calls by number of items
    requests: Counter[int] = field(default_factory=Counter)  # batch calls by number of requests

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches_by_items": dict(sorted(self.items.items())),
            "batches_by_requests": dict(sorted(self.requests.items())),
            "max_requests_per_batch": max(self.requests, default=0),
        }


class MicroBatcher(Generic[Item]):
    def __init__(
        self,
        run: Callable[[list[Item]], Sequence[Any]],
        *,
        max_items: int,
        wait_s: float,
        max_wait_s: float = 0.05,
    ) -> None:
        self._run = run
        self.max_items = max_items
        self.wait_s = wait_s  # the quiet gap that ends a burst
        self.max_wait_s = max(wait_s, max_wait_s)  # the longest a first request is held
        self._last_arrival = 0.0
        self.stats = MicroBatchStats()
        self._waiting: list[_Request[Item]] = []
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, items: list[Item]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work())
        request = _Request(items, loop.create_future())
        self._waiting.append(request)
        self._last_arrival = loop.time()
        assert self._wakeup is not None
        self._wakeup.set()
        # A cancelled caller leaves its items in the batch; its results are simply dropped.
        return await request.future

    def _take(self) -> list[_Request[Item]]:
        taken: list[_Request[Item]] = []
        count = 0
        while self._waiting:
            request = self._waiting[0]
            if taken and count + len(request.items) > self.max_items:
                break  # a request's items stay together; one bigger than max_items goes alone
            taken.append(self._waiting.pop(0))
            count += len(request.items)
        return [r for r in taken if not r.future.done()]

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            await self._burst()
            while self._waiting:
                batch = self._take()
                if not batch:
                    continue
                items = [item for request in batch for item in request.items]
                try:
                    results = list(await anyio.to_thread.run_sync(self._run, items))
                except Exception as exc:
                    for request in batch:
                        if not request.future.done():
                            request.future.set_exception(exc)
                    continue
                self.stats.items[len(items)] += 1
                self.stats.requests[len(batch)] += 1
                start = 0
                for request in batch:
                    end = start + len(request.items)
                    if not request.future.done():
                        request.future.set_result(results[start:end])
                    start = end

    async def _burst(self) -> None:
        """Hold an idle worker until the burst that woke it is over (see the module's docstring)."""
        if self.wait_s <= 0:
            return
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while sum(len(r.items) for r in self._waiting) < self.max_items:
            pause = min(self._last_arrival + self.wait_s, deadline) - loop.time()
            if pause <= 0:
                return
            self._wakeup.clear()  # set again by the next submit: recount then
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), pause)

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for request in self._waiting:
            if not request.future.done():
                request.future.cancel()
