"""A task group that lives as long as the ModelManager: runner readers, watchers, launches.

Entered explicitly (``async with``, the clean way: a server lifespan, tests) or, on asyncio, started
on first use in a task of its own, so that a server which only calls ``aclose()`` at shutdown
works too. ``close()`` ends it either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import TaskGroup


class Background:
    def __init__(self) -> None:
        self._tg: TaskGroup | None = None
        self._entered = False
        self._host: asyncio.Task[None] | None = None
        self._stop = anyio.Event()

    async def __aenter__(self) -> Background:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._entered = True
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        tg, self._tg, self._entered = self._tg, None, False
        assert tg is not None
        return await tg.__aexit__(*exc_info)  # type: ignore[arg-type]

    async def group(self) -> TaskGroup:
        """The task group, starting the self-hosted one if nobody entered this yet."""
        if self._tg is not None:
            return self._tg
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "use `async with ModelManager() as manager:` on event loops other than asyncio"
            ) from None
        started = anyio.Event()

        async def host() -> None:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                started.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
            self._tg = None

        self._stop = anyio.Event()
        self._host = loop.create_task(host())
        await started.wait()
        assert self._tg is not None
        return self._tg

    def start_soon(self, func: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Start a task from synchronous code (a callback); the group must be running already."""
        if self._tg is None:
            raise RuntimeError("the manager's background tasks are not running")
        self._tg.start_soon(func, *args)

    async def close(self) -> None:
        """End the self-hosted group (an entered one ends with its ``async with``)."""
        if self._host is not None:
            self._stop.set()
            host, self._host = self._host, None
            await host
