"""The server's side of one runner: talk to it, notice when it dies, and stop it.

After ``spawn.start_runner`` the server sends the ``Load`` frame. A reader task routes reply frames
to the call waiting for them; a watcher task reaps the process. Either one noticing the end (socket
EOF, process exit) fails every call in flight with ``Unavailable`` and reports the cause.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import anyio
import msgspec
from anyio.abc import Process, TaskGroup
from anyio.streams.memory import MemoryObjectSendStream

from ..errors import LaunchError, ModelyardError, Overloaded, Unavailable
from . import protocol as p
from .spawn import RunnerOutput, describe_exit, start_runner

log = logging.getLogger("modelyard.runner")


class RunnerProcess:
    """One runner subprocess and its connection. Create with ``await RunnerProcess.spawn(...)``."""

    def __init__(
        self, process: Process, conn: p.FrameStream, output: RunnerOutput, max_pending: int
    ) -> None:
        self.process = process
        self.conn = conn
        self.output = output
        self.max_pending = max_pending
        self.pid = process.pid
        self.ready: p.Ready | None = None
        self.launch_error: ModelyardError | None = None
        self.death: str | None = None
        self.terminating = False
        self.returncode: int | None = None
        self.on_progress: Callable[[str, float], None] = lambda stage, progress: None
        self.on_death: Callable[[str], None] = lambda cause: None
        self._calls: dict[int, MemoryObjectSendStream[Any]] = {}
        self._ids = itertools.count(1)
        self._settled = anyio.Event()  # Ready, LaunchFailed or death
        self._exited = anyio.Event()

    @classmethod
    async def spawn(
        cls,
        load: p.LoadSpec,
        *,
        tg: TaskGroup,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        max_pending: int = 64,
    ) -> RunnerProcess:
        process, stream, output = await start_runner(name=load.uid, tg=tg, python=python, env=env)
        self = cls(process, p.FrameStream(stream, p.TO_SERVER), output, max_pending)
        tg.start_soon(self._watch)
        tg.start_soon(self._read_loop)
        try:
            await self.conn.send(p.Load(load))
        except BaseException:  # cancelled or broken: never leave a runner behind
            await self.terminate(grace=0)
            raise
        return self

    # --- launch ---
    async def wait_ready(self) -> p.Ready:
        """Wait for the model to load; ``LaunchError`` (or the runner's own error) when it cannot."""
        await self._settled.wait()
        if self.ready is not None:
            return self.ready
        if self.launch_error is not None:
            raise self.launch_error
        tail = await self.output.tail()
        raise LaunchError(
            f"{self.death} while loading the model" + (f"; last output: {tail}" if tail else "")
        )

    # --- serving ---
    @property
    def in_flight(self) -> int:
        return len(self._calls)

    def check_capacity(self, uid: str) -> None:
        if self.death is not None:
            raise Unavailable(
                f"model {uid!r} is not serving: {self.death}; relaunch it", retry_after=5
            )
        if len(self._calls) >= self.max_pending:
            raise Overloaded(
                f"model {uid!r} already has {self.max_pending} requests in flight; retry shortly "
                "or raise MODELYARD_MAX_PENDING"
            )

    async def stream(
        self, uid: str, op: p.Op, request: msgspec.Struct
    ) -> AsyncIterator[dict[str, Any]]:
        """The chunks of a chat/complete call. Closing the iterator early cancels it in the engine."""
        self.check_capacity(uid)
        call_id = next(self._ids)
        send, receive = anyio.create_memory_object_stream[Any](math.inf)
        self._calls[call_id] = send
        finished = False
        try:
            await self.conn.send(p.make_call(call_id, op, request))
            async with receive:
                async for frame in receive:
                    if isinstance(frame, p.Chunk):
                        yield frame.data
                    elif isinstance(frame, p.End):
                        finished = True
                        return
                    elif isinstance(frame, p.Error):
                        finished = True
                        raise ModelyardError.from_dict(frame.error)
            raise self._lost(uid)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._lost(uid) from None
        finally:
            send.close()
            if self._calls.pop(call_id, None) is not None and not finished and self.death is None:
                with anyio.CancelScope(shield=True):
                    await self._send_quietly(p.Cancel(call_id))

    async def call(self, uid: str, op: p.Op, request: msgspec.Struct) -> dict[str, Any]:
        """One embed/rerank call: its Result data, or the runner's error re-raised."""
        self.check_capacity(uid)
        call_id = next(self._ids)
        send, receive = anyio.create_memory_object_stream[Any](1)
        self._calls[call_id] = send
        done = False
        try:
            await self.conn.send(p.make_call(call_id, op, request))
            try:
                frame = await receive.receive()
            except anyio.EndOfStream:
                raise self._lost(uid) from None
            done = True
            if isinstance(frame, p.Error):
                raise ModelyardError.from_dict(frame.error)
            if not isinstance(frame, p.Result):
                raise ModelyardError(
                    f"runner answered a {op} call with a {type(frame).__name__} frame"
                )
            return frame.data
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            raise self._lost(uid) from None
        finally:
            send.close()
            receive.close()
            if self._calls.pop(call_id, None) is not None and not done and self.death is None:
                with anyio.CancelScope(shield=True):
                    await self._send_quietly(p.Cancel(call_id))

    def _lost(self, uid: str) -> Unavailable:
        return Unavailable(
            f"model {uid!r} stopped while answering: {self.death or 'runner connection lost'}",
            retry_after=5,
        )

    # --- background tasks ---
    async def _read_loop(self) -> None:
        try:
            while True:
                frame = await self.conn.receive()
                if isinstance(frame, (p.Chunk, p.Result, p.End, p.Error)):
                    send = self._calls.get(frame.id)
                    # A caller that went away has closed its end; its Cancel is on the way.
                    if send is not None:
                        with contextlib.suppress(anyio.BrokenResourceError, anyio.WouldBlock):
                            send.send_nowait(frame)
                elif isinstance(frame, p.Progress):
                    self.on_progress(frame.stage, frame.progress)
                elif isinstance(frame, p.Ready):
                    self.ready = frame
                    self._settled.set()
                elif isinstance(frame, p.LaunchFailed):
                    self.launch_error = ModelyardError.from_dict(frame.error)
                    self._settled.set()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except msgspec.DecodeError as exc:
            log.error("runner %d sent a bad frame: %s", self.pid, exc)
        # EOF usually means the process is gone; wait briefly so the cause names its exit status.
        with anyio.move_on_after(2):
            await self._exited.wait()
        self._die(describe_exit(self.returncode))
        with anyio.CancelScope(shield=True):
            await self.conn.aclose()

    async def _watch(self) -> None:
        self.returncode = await self.process.wait()
        self._exited.set()
        self._die(describe_exit(self.returncode))

    def _die(self, cause: str) -> None:
        if self.death is not None:
            return
        self.death = cause
        if self.returncode is None or self.returncode < 0:
            log.warning("runner %d: %s", self.pid, cause)
        self._kill_group()  # workers an engine forked would otherwise keep the memory
        for send in self._calls.values():
            send.close()  # each waiting call sees its stream end and raises Unavailable
        self._calls.clear()
        self._settled.set()
        if not self.terminating:
            self.on_death(cause)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)

    async def _send_quietly(self, frame: p._Frame) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.conn.send(frame)

    # --- stopping ---
    async def terminate(self, grace: float = 5.0) -> None:
        """Ask the runner to shut down, escalate to SIGTERM/SIGKILL, and reap it."""
        self.terminating = True
        with anyio.CancelScope(shield=True):
            if not self._exited.is_set():
                await self._send_quietly(p.Shutdown())
                with anyio.move_on_after(grace):
                    await self._exited.wait()
            for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0)):
                if self._exited.is_set():
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, sig)
                with anyio.move_on_after(wait):
                    await self._exited.wait()
            self._die("terminated")
            await self.conn.aclose()
