"""The server's side of one runner: talk to it, notice when it dies, and stop it.

After ``spawn.start_runner`` the server sends the ``Load`` frame. A reader task routes reply frames
to the call waiting for them; a watcher task reaps the process. Either one noticing the end (socket
EOF, process exit) fails every call in flight with ``Unavailable`` and reports the cause.

Once the model is ready a heartbeat task pings the runner every ``HEARTBEAT_INTERVAL``; a runner
that has not answered for ``heartbeat_timeout`` seconds (stopped, or its event loop stuck in the
engine) is reported through ``on_unresponsive``, and through ``on_responsive`` if it answers again.
Every call has a deadline: past it, the caller gets ``GatewayTimeout`` and the call is cancelled.
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
from anyio.abc import TaskGroup

from ..errors import GatewayTimeout, LaunchError, ModelyardError, Overloaded, Unavailable
from . import protocol as p
from .handles import LocalHandle, RunnerHandle
from .inbox import Inbox
from .spawn import start_runner

log = logging.getLogger("modelyard.runner")
HEARTBEAT_INTERVAL = 1.0
DEFAULT_HEARTBEAT_TIMEOUT = 5.0


def default_heartbeat_timeout() -> float:
    return float(os.environ.get("MODELYARD_HEARTBEAT_TIMEOUT") or DEFAULT_HEARTBEAT_TIMEOUT)


class RunnerProcess:
    """One runner process and its connection. Create with ``await RunnerProcess.spawn(...)`` (a
    subprocess of this server), or from a handle and connection of another kind (``attach``)."""

    def __init__(
        self,
        handle: RunnerHandle,
        conn: p.FrameStream | p.SocketFrames,
        max_pending: int,
        *,
        tg: TaskGroup | None = None,
        heartbeat_timeout: float | None = None,
    ) -> None:
        self.handle = handle
        self.conn = conn
        self.max_pending = max_pending
        self.heartbeat_timeout = heartbeat_timeout or default_heartbeat_timeout()
        self.unresponsive = False
        self.on_unresponsive: Callable[[str], None] = lambda cause: None
        self.on_responsive: Callable[[], None] = lambda: None
        self._tg = tg
        self._last_pong = 0.0
        self._pinging = False
        self.pid = handle.pid
        self.ready: p.Ready | None = None
        self.launch_error: ModelyardError | None = None
        self.death: str | None = None
        self.terminating = False
        self.returncode: int | None = None
        self.on_progress: Callable[[str, float], None] = lambda stage, progress: None
        self.on_death: Callable[[str], None] = lambda cause: None
        self._calls: dict[int, Inbox] = {}
        self._request_calls: dict[str, int] = {}  # request id -> call id, for abort()
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
        heartbeat_timeout: float | None = None,
    ) -> RunnerProcess:
        self = await cls.start(
            load.uid,
            tg=tg,
            python=python,
            env=env,
            max_pending=max_pending,
            heartbeat_timeout=heartbeat_timeout,
        )
        await self.load(load)
        return self

    @classmethod
    async def start(
        cls,
        name: str,
        *,
        tg: TaskGroup,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        max_pending: int = 64,
        heartbeat_timeout: float | None = None,
        preload: str | None = None,
    ) -> RunnerProcess:
        """A runner waiting for its ``load``; ``preload``: an engine whose modules it imports
        meanwhile (a warm runner, see ``warm.py``)."""
        process, stream, output = await start_runner(
            name=name, tg=tg, python=python, env=env, preload=preload
        )
        return await cls.attach(
            LocalHandle(process, output),
            stream,
            None,
            tg=tg,
            max_pending=max_pending,
            heartbeat_timeout=heartbeat_timeout,
        )

    @classmethod
    async def attach(
        cls,
        handle: RunnerHandle,
        stream: anyio.abc.ByteStream,
        load: p.LoadSpec | None,
        *,
        tg: TaskGroup,
        max_pending: int = 64,
        heartbeat_timeout: float | None = None,
    ) -> RunnerProcess:
        """Drive a started runner over ``stream``: watch it, and send it ``load`` if given."""
        conn = await p.open_frames(stream, p.TO_SERVER)
        self = cls(handle, conn, max_pending, tg=tg, heartbeat_timeout=heartbeat_timeout)
        tg.start_soon(self._watch)
        tg.start_soon(self._read_loop)
        if load is not None:
            await self.load(load)
        return self

    async def load(self, load: p.LoadSpec) -> None:
        """Send the model to load (once); ``wait_ready`` tells how it went."""
        if isinstance(self.handle, LocalHandle):
            self.handle.output.name = load.uid  # its log lines name the model from now on
        try:
            await self.conn.send(p.Load(load))
        except BaseException:  # cancelled or broken: never leave a runner behind
            await self.terminate(grace=0)
            raise

    # --- launch ---
    async def wait_ready(self) -> p.Ready:
        """Wait for the model to load; ``LaunchError`` (or the runner's own error) when it cannot."""
        await self._settled.wait()
        if self.ready is not None:
            return self.ready
        if self.launch_error is not None:
            raise self.launch_error
        tail = await self.handle.tail()
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
        if self.unresponsive:
            raise Unavailable(
                f"model {uid!r} is unresponsive: {self.silence()}; wait for it, terminate it, "
                "or launch it with restart_unresponsive=true",
                code="model_unresponsive",
                retry_after=5,
            )
        if len(self._calls) >= self.max_pending:
            raise Overloaded(
                f"model {uid!r} already has {self.max_pending} requests in flight; retry shortly "
                "or raise MODELYARD_MAX_PENDING"
            )

    async def stream(
        self,
        uid: str,
        op: p.Op,
        request: msgspec.Struct,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """The chunks of a chat/complete call. Closing the iterator early cancels it in the engine;
        ``timeout`` (seconds, for the whole call) ends it with ``GatewayTimeout``."""
        self.check_capacity(uid)
        call_id = next(self._ids)
        inbox = self._calls[call_id] = Inbox(_deadline(timeout))
        self._track_request(request_id, call_id)
        finished = False
        try:
            await self.conn.send(p.make_call(call_id, op, request))
            while True:
                frame = await self._next(inbox, uid, timeout)
                if frame is None:
                    break
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
            inbox.close()
            self._untrack_request(request_id, call_id)
            if self._calls.pop(call_id, None) is not None and not finished and self.death is None:
                with anyio.CancelScope(shield=True):
                    await self._send_quietly(p.Cancel(call_id))

    async def call(
        self,
        uid: str,
        op: p.Op,
        request: msgspec.Struct,
        *,
        timeout: float | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        """One embed/rerank call: its Result data, or the runner's error re-raised."""
        self.check_capacity(uid)
        call_id = next(self._ids)
        inbox = self._calls[call_id] = Inbox(_deadline(timeout))
        self._track_request(request_id, call_id)
        done = False
        try:
            await self.conn.send(p.make_call(call_id, op, request))
            frame = await self._next(inbox, uid, timeout)
            if frame is None:
                raise self._lost(uid)
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
            inbox.close()
            self._untrack_request(request_id, call_id)
            if self._calls.pop(call_id, None) is not None and not done and self.death is None:
                with anyio.CancelScope(shield=True):
                    await self._send_quietly(p.Cancel(call_id))

    @staticmethod
    async def _next(inbox: Inbox, uid: str, timeout: float | None) -> Any:
        """The call's next frame, None when the runner went away; ``GatewayTimeout`` past the
        deadline. A frame already here is taken without a pass through the event loop."""
        if inbox.expired:
            raise _timed_out(uid, timeout)
        frame = inbox.take()
        if frame is None and not inbox.closed:
            await inbox.wait()
            if inbox.expired:
                raise _timed_out(uid, timeout)
            frame = inbox.take()
        return frame

    # --- aborting one request by its id ---
    def _track_request(self, request_id: str | None, call_id: int) -> None:
        if request_id is not None:
            self._request_calls[request_id] = call_id

    def _untrack_request(self, request_id: str | None, call_id: int) -> None:
        if request_id is not None and self._request_calls.get(request_id) == call_id:
            del self._request_calls[request_id]

    def abort(self, request_id: str, error: ModelyardError) -> bool:
        """End the call that carries ``request_id``: its caller gets ``error`` at once and the
        runner a ``Cancel`` (which closes the engine's stream). False when no such call is running."""
        call_id = self._request_calls.pop(request_id, None)
        inbox = self._calls.pop(call_id, None) if call_id is not None else None
        if inbox is None or call_id is None:
            return False
        inbox.put(p.Error(call_id, error.to_dict()))
        inbox.close()
        if self._tg is not None and self.death is None:
            self._tg.start_soon(self._send_quietly, p.Cancel(call_id))
        return True

    def _lost(self, uid: str) -> Unavailable:
        return Unavailable(
            f"model {uid!r} stopped while answering: {self.death or 'runner connection lost'}",
            retry_after=5,
        )

    # --- background tasks ---
    async def _read_loop(self) -> None:
        if isinstance(self.conn, p.SocketFrames):
            self.conn.on_frame = self._deliver  # replies reach their calls as their bytes arrive
        try:
            while True:
                self._route(await self.conn.receive())
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except msgspec.DecodeError as exc:
            log.error("runner %d sent a bad frame: %s", self.pid, exc)
        except Exception:
            log.exception("runner %d: routing a frame failed", self.pid)
        # EOF usually means the process is gone; wait briefly so the cause names its exit status.
        with anyio.move_on_after(2):
            await self._exited.wait()
        self._die(self.handle.describe_exit(self.returncode))
        with anyio.CancelScope(shield=True):
            await self.conn.aclose()

    def _deliver(self, frame: Any) -> bool:
        """A reply to a call into its inbox (True), anything else left to ``_route`` (False)."""
        if not isinstance(frame, (p.Chunk, p.Result, p.End, p.Error)):
            return False
        inbox = self._calls.get(frame.id)
        if inbox is not None:  # a caller that went away has sent its Cancel
            inbox.put(frame)
        return True

    def _route(self, frame: Any) -> None:
        if self._deliver(frame):
            pass
        elif isinstance(frame, p.Progress):
            self.on_progress(frame.stage, frame.progress)
        elif isinstance(frame, p.Pong):
            self._last_pong = anyio.current_time()
        elif isinstance(frame, p.Ready):
            self.ready = frame
            self._settled.set()
            if self._tg is not None:
                self._tg.start_soon(self._heartbeat)
        elif isinstance(frame, p.LaunchFailed):
            self.launch_error = ModelyardError.from_dict(frame.error)
            self._settled.set()

    async def _heartbeat(self) -> None:
        seq = 0
        self._last_pong = anyio.current_time()
        while self.death is None and not self.terminating:
            seq += 1
            # Sent from a task of its own: a send stuck behind a full socket (a stopped runner
            # reads nothing) must not stop this loop from noticing the silence.
            if not self._pinging and self._tg is not None:
                self._tg.start_soon(self._ping, seq)
            await anyio.sleep(HEARTBEAT_INTERVAL)
            silent = anyio.current_time() - self._last_pong
            if silent > self.heartbeat_timeout and not self.unresponsive:
                self.unresponsive = True
                log.warning("runner %d: %s", self.pid, self.silence())
                self.on_unresponsive(self.silence())
            elif silent <= self.heartbeat_timeout and self.unresponsive:
                self.unresponsive = False
                log.warning("runner %d answers its heartbeat again", self.pid)
                self.on_responsive()

    async def _ping(self, seq: int) -> None:
        self._pinging = True
        try:
            await self._send_quietly(p.Ping(seq))
        finally:
            self._pinging = False

    def silence(self) -> str:
        silent = anyio.current_time() - self._last_pong
        return (
            f"runner {self.pid} has not answered its heartbeat for {silent:.0f} s "
            "(stopped, or stuck inside the engine)"
        )

    async def _watch(self) -> None:
        self.returncode = await self.handle.wait()
        self._exited.set()
        self._die(self.handle.describe_exit(self.returncode))
        with anyio.CancelScope(shield=True):
            await self.handle.release()

    def _die(self, cause: str) -> None:
        if self.death is not None:
            return
        self.death = cause
        if self.returncode is None or self.returncode < 0:
            log.warning("runner %d: %s", self.pid, cause)
        self._kill_group()  # workers an engine forked would otherwise keep the memory
        for inbox in self._calls.values():
            inbox.close()  # each waiting call sees its inbox end and raises Unavailable
        self._calls.clear()
        self._settled.set()
        if not self.terminating:
            self.on_death(cause)

    def _kill_group(self) -> None:
        self.handle.signal(signal.SIGKILL)

    async def _send_quietly(self, frame: p._Frame) -> None:
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self.conn.send(frame)

    # --- stopping ---
    async def terminate(self, grace: float = 5.0) -> None:
        """Ask the runner to shut down, escalate to SIGTERM/SIGKILL, and reap it."""
        self.terminating = True
        with anyio.CancelScope(shield=True):
            # A runner that stopped answering will not read Shutdown, and a stopped (SIGSTOP) one
            # will not even act on SIGTERM: straight to SIGKILL, which always works.
            hung = self.unresponsive
            if not self._exited.is_set() and not hung:
                await self._send_quietly(p.Shutdown())
                with anyio.move_on_after(grace):
                    await self._exited.wait()
            steps = ((signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0))
            for sig, wait in steps[1:] if hung else steps:
                if self._exited.is_set():
                    break
                self.handle.signal(sig)
                with anyio.move_on_after(wait):
                    await self._exited.wait()
            self._die("terminated")
            await self.conn.aclose()


def _deadline(timeout: float | None) -> float:
    return anyio.current_time() + timeout if timeout else math.inf


def _timed_out(uid: str, timeout: float | None) -> GatewayTimeout:
    return GatewayTimeout(
        f"model {uid!r} did not finish the request within its request_timeout of {timeout:g} s; "
        "ask for fewer tokens, or raise request_timeout (a launch option, or "
        "`modelyard serve --request-timeout`)"
    )
