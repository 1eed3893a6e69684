"""The runner side: load one model through the plugins and serve its calls over the connection.

Every call runs in its own task, so an engine that batches sees all requests at once; a ``Cancel``
cancels that task, which closes the engine's stream so the engine stops generating. The runner exits
on ``Shutdown`` or when the server's end of the socket closes (the server died or gave up on us).
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
from anyio.abc import TaskGroup

from .. import __version__
from ..engine import LoadedModel
from ..errors import EngineError, LaunchError, ModelyardError, Unavailable
from ..plugins import format_exception, get_plugin_manager
from . import protocol as p

log = logging.getLogger("modelyard.runner")
CLOSE_TIMEOUT = 10.0
CHUNK_LINGER = 0.003  # seconds a streamed chunk may wait for others to share its write


class Host:
    def __init__(self, conn: p.FrameStream | p.SocketFrames, load: p.LoadSpec) -> None:
        self.conn = conn
        self.load = load
        self.model: LoadedModel | None = None
        self.calls: dict[int, anyio.CancelScope] = {}
        self.stop = anyio.Event()

    async def run(self) -> int:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._read_loop, tg)
            try:
                self.model = model = await self._load_model()
            except ModelyardError as exc:
                log.error("load failed: %s", exc.message)
                await self._reply(p.LaunchFailed(exc.to_dict()))
                tg.cancel_scope.cancel()
                return 1
            # The engine's import and load leave ~10^6 long-lived objects (torch, transformers):
            # a full collection walks them all, a ~300 ms stall of every call here (MiniLM).
            # Frozen, the collections that calls trigger see only what the calls allocate.
            gc.freeze()
            await self._reply(p.Ready(model.context_length, tuple(model.abilities), os.getpid()))
            await self.stop.wait()
            tg.cancel_scope.cancel()  # cancels every call in flight: their engine streams close
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await model.close()
        return 0

    async def _load_model(self) -> LoadedModel:
        load = self.load
        if load.protocol != p.PROTOCOL_VERSION:
            raise LaunchError(
                f"this runner ({sys.executable}, modelyard {__version__}) speaks runner protocol "
                f"{p.PROTOCOL_VERSION} and the server {load.protocol}: bring the engine's environment "
                f"in line with `modelyard env install {load.engine}`, or install the server's "
                f"modelyard version into {sys.executable}"
            )
        await self._reply(p.Progress("loading", 0.0))
        pm = get_plugin_manager()
        name = load.family.model_name

        def call_hook() -> LoadedModel | None:
            return pm.call_owner(
                "load_model",
                load.engine,
                family=load.family,
                spec=load.spec,
                quantization=load.quantization,
                params=dict(load.params),
                path=Path(load.path),
            )

        started = time.monotonic()
        try:
            # Loading blocks for seconds to minutes; off the loop so EOF/Shutdown are still seen.
            model = await anyio.to_thread.run_sync(call_hook)
        except ModelyardError:
            raise
        except Exception as exc:
            log.exception("engine %s failed to load %s", load.engine, name)
            raise LaunchError(
                f"engine {load.engine} failed to load {name}: {format_exception(exc)}"
            ) from exc
        if model is None:
            failed = "; ".join(f"{k}: {v}" for k, v in pm.failed.items())
            raise LaunchError(
                f"no installed plugin loads engine {load.engine!r} for {name}"
                + (f" (plugins that failed to import: {failed})" if failed else "")
            )
        log.info(
            "loaded %s (%s) on %s in %.1f s",
            name,
            load.quantization,
            load.engine,
            time.monotonic() - started,
        )
        return model

    async def _read_loop(self, tg: TaskGroup) -> None:
        while True:
            try:
                frame = await self.conn.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                frame = p.Shutdown()
            if isinstance(frame, p.Shutdown):
                if self.model is None:
                    # Still inside the engine's load (a thread we cannot interrupt): leave now.
                    log.info("shutdown during load; exiting")
                    os._exit(0)
                self.stop.set()
                return
            if isinstance(frame, p.Call):
                scope = anyio.CancelScope()
                self.calls[frame.id] = scope
                tg.start_soon(self._serve_call, frame, scope)
            elif isinstance(frame, p.Cancel):
                running = self.calls.get(frame.id)
                if running is not None:
                    running.cancel()
            elif isinstance(frame, p.Ping):
                await self._reply(p.Pong(frame.seq))

    async def _serve_call(self, call: p.Call, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                try:
                    await self._dispatch(call)
                except ModelyardError as exc:
                    await self._reply(p.Error(call.id, exc.to_dict()))
                except msgspec.ValidationError as exc:
                    await self._reply(
                        p.Error(call.id, EngineError(f"bad request frame: {exc}").to_dict())
                    )
                except Exception as exc:
                    log.exception("%s call %d failed", call.op, call.id)
                    error = EngineError(
                        f"engine {self.load.engine} failed: {format_exception(exc)}"
                    )
                    await self._reply(p.Error(call.id, error.to_dict()))
        finally:
            self.calls.pop(call.id, None)

    async def _dispatch(self, call: p.Call) -> None:
        model = self.model
        if model is None:
            raise Unavailable("the model is still loading")
        request = p.decode_request(call)
        if call.op in p.STREAM_OPS:
            stream: AsyncIterator[dict[str, Any]] = getattr(model, call.op)(request)
            try:
                async for chunk in stream:
                    # With other calls streaming, their tokens of the same decoding step come
                    # from other engine threads within a fraction of a millisecond: held up to
                    # CHUNK_LINGER, they leave in one write, and the server reads, decodes and
                    # wakes once per step instead of once per thread that happened to be first.
                    linger = CHUNK_LINGER if len(self.calls) > 1 else 0.0
                    await self.conn.send(p.Chunk(call.id, chunk), linger)
            finally:
                # Closing the engine's iterator is how the engine learns to stop generating; shield
                # it, since on Cancel we are already inside a cancelled scope.
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
            await self._reply(p.End(call.id))
        else:
            result = await getattr(model, call.op)(request)
            await self._reply(p.Result(call.id, result))

    async def _reply(self, frame: p._Frame) -> None:
        try:
            await self.conn.send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.stop.set()  # the server is gone; nothing to answer to


async def run_runner(socket_path: str) -> int:
    stream = await anyio.connect_unix(socket_path)
    conn = await p.open_frames(stream, p.TO_RUNNER)
    try:
        first = await conn.receive()
    except anyio.EndOfStream:
        return 0
    if isinstance(first, p.Shutdown):  # a warm runner that was never used
        return 0
    if not isinstance(first, p.Load):
        log.error("expected a load frame first, got %s", type(first).__name__)
        return 2
    try:
        return await Host(conn, first.spec).run()
    finally:
        with anyio.CancelScope(shield=True):
            await conn.aclose()
