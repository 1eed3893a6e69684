"""Warm runners: one idle runner per engine this server has launched, its modules already imported.

A runner spends most of a small model's launch importing its engine (torch, transformers and
sentence-transformers: about 5 s here; loading MiniLM's weights takes 0.4 s). After a launch on an
engine, the manager starts a spare runner for the same interpreter and environment that imports
the modules the engine declares (``EngineInfo.preload``) and waits; the next launch on that engine
takes it and sends its ``Load`` at once, and a new spare is started behind it. A model unloaded
when idle and reloaded on its next request depends on this.

A spare is a plain child process, started like any runner (its own session, the engine
environment's interpreter), not a fork of a template: no engine thread or CUDA context is ever
forked. The price is its memory, shown per spare in ``/status`` and ``/metrics``;
``modelyard serve --no-warm-runners`` turns them off.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..errors import ModelyardError
from ..proctree import tree_resident_bytes
from .process import RunnerProcess

log = logging.getLogger("modelyard.runner")
# A spare serves launches of the same engine, interpreter and environment variables only.
Key = tuple[str, str, tuple[tuple[str, str], ...]]


def warm_key(engine: str, python: str, env: Mapping[str, str]) -> Key:
    return engine.lower(), python, tuple(sorted(env.items()))


class WarmRunners:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._spares: dict[Key, RunnerProcess] = {}
        self._starting: dict[Key, anyio.Event] = {}

    async def take(self, key: Key) -> RunnerProcess | None:
        """The spare for ``key``, if one is alive and waiting (it is no longer a spare then). One
        still importing is waited for: it started before this launch, so it is ready sooner than
        a runner started now."""
        starting = self._starting.get(key)
        if starting is not None:
            await starting.wait()
        spare = self._spares.pop(key, None)
        if spare is not None and spare.death is not None:
            return None
        return spare

    def refill(self, key: Key, tg: TaskGroup, heartbeat_timeout: float | None) -> None:
        """Start a spare for ``key`` in ``tg`` unless one is there or on its way."""
        if self.enabled and key not in self._spares and key not in self._starting:
            self._starting[key] = anyio.Event()
            tg.start_soon(self._start, key, tg, heartbeat_timeout)

    async def _start(self, key: Key, tg: TaskGroup, heartbeat_timeout: float | None) -> None:
        engine, python, env = key
        spare = None
        try:
            spare = await RunnerProcess.start(
                f"warm {engine}",
                tg=tg,
                python=python,
                env=dict(env),
                heartbeat_timeout=heartbeat_timeout,
                preload=engine,
            )
            if self.enabled:
                self._spares[key], spare = spare, None
        except ModelyardError as exc:  # the launch that follows starts a runner the usual way
            log.warning("a warm runner for %s did not start: %s", engine, exc.message)
        finally:
            self._starting.pop(key).set()
            if spare is not None:  # turned off (or closing) while it started
                with anyio.CancelScope(shield=True):
                    await spare.terminate(grace=1.0)

    def describe(self) -> list[dict[str, Any]]:
        """The spares waiting now: engine, interpreter, pid and resident memory."""
        return [
            {
                "engine": engine,
                "python": python,
                "pid": spare.pid,
                "resident_memory_bytes": tree_resident_bytes(spare.pid),
            }
            for (engine, python, _), spare in self._spares.items()
            if spare.death is None
        ]

    async def aclose(self) -> None:
        self.enabled = False
        spares, self._spares = list(self._spares.values()), {}
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for spare in spares:
                    with contextlib.suppress(Exception):
                        tg.start_soon(spare.terminate, 1.0)
