"""The Ray actor that hosts one runner on its node, and the server's handle and stream to it.

The actor starts the ordinary runner subprocess on its node (``spawn.start_runner``, with the
interpreter that node's engine environment names) and relays the runner's byte stream: the server
writes frames with ``write`` and reads them from the ``read`` generator, so ``RunnerProcess`` drives
a remote runner exactly as a local one (heartbeat, deadlines, cancellation included). When the node
dies, Ray fails those calls: the stream ends, ``wait`` reports the loss, and the model's requests
end with 503 like any runner death.

Nothing here imports Ray at module level: the embedded default never does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import anyio.abc

READ_CHUNK = 256 * 1024
NODE_LOST = -1000  # ``wait`` result when the actor (its node) is gone, not the runner's own status


class RunnerHost:
    """Ray actor class (decorated with ``ray.remote`` by ``host_actor``): one runner on its node."""

    def __init__(self) -> None:
        self._stream: anyio.abc.SocketStream | None = None
        self._process: anyio.abc.Process | None = None
        self._output: Any = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fetched = 0.0  # download progress, 0..1

    async def fetch(self, spec: Any, quantization: str, hub: str | None) -> str:
        """The weights' path on this node, downloaded here when missing (``progress`` polls)."""
        from ..hub import resolve

        def progress(value: float) -> None:
            self._fetched = value

        path = await anyio.to_thread.run_sync(
            lambda: resolve(spec, quantization, hub=hub, progress=progress)  # type: ignore[arg-type]
        )
        return str(path)

    def progress(self) -> float:
        return self._fetched

    async def start(self, name: str, engine: str, env: Mapping[str, str]) -> dict[str, Any]:
        """Start the runner with this node's interpreter for ``engine``; its pid and node id."""
        import ray

        from ..envs.store import EnvStore

        python = EnvStore().interpreter(engine)
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._host(name, python, env, started))
        await started  # re-raises the LaunchError of a runner that did not start
        assert self._process is not None
        return {"pid": self._process.pid, "node_id": ray.get_runtime_context().get_node_id()}

    async def _host(
        self, name: str, python: str, env: Mapping[str, str], started: asyncio.Future[None]
    ) -> None:
        from ..runner.spawn import start_runner

        try:
            async with anyio.create_task_group() as tg:  # pumps the runner's output
                try:
                    self._process, self._stream, self._output = await start_runner(
                        name=name, tg=tg, python=python, env=env
                    )
                except BaseException as exc:
                    started.set_exception(exc)
                    return
                started.set_result(None)
                await self._stop.wait()
                tg.cancel_scope.cancel()
        finally:
            if not started.done():
                started.set_exception(RuntimeError("the runner host stopped"))

    async def write(self, data: bytes) -> None:
        assert self._stream is not None
        await self._stream.send(data)

    async def read(self) -> AsyncIterator[bytes]:
        """The runner's bytes as they come (coalesced up to READ_CHUNK); ends at its EOF."""
        assert self._stream is not None
        with contextlib.suppress(anyio.EndOfStream, anyio.ClosedResourceError):
            while True:
                yield await self._stream.receive(READ_CHUNK)

    async def wait(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    def signal(self, sig: int) -> None:
        if self._process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._process.pid, signal.Signals(sig))

    async def tail(self, count: int = 3) -> str:
        return await self._output.tail(count) if self._output is not None else ""

    def recent(self, count: int) -> tuple[str, ...]:
        return self._output.recent(count) if self._output is not None else ()

    async def close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                await self._stream.aclose()
        self._stop.set()


def host_actor(options: Mapping[str, Any]) -> Any:
    """A new RunnerHost actor placed by Ray ``options`` (resources, scheduling strategy)."""
    import ray

    remote = ray.remote(RunnerHost).options(
        num_cpus=0,  # the runner's own CPUs are the engine's business; placement uses resources
        max_concurrency=1000,  # reads, writes, waits and heartbeats at once
        **options,
    )
    return remote.remote()


class ActorByteStream(anyio.abc.ByteStream):
    """The runner's connection through its host actor: writes are calls, reads a Ray generator."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._reads = actor.read.remote()

    async def send(self, item: bytes) -> None:
        try:
            await self._actor.write.remote(item)
        except Exception as exc:  # the actor or its node is gone
            raise anyio.BrokenResourceError(f"runner host lost: {exc}") from None

    async def receive(self, max_bytes: int = 65536) -> bytes:
        try:
            ref = await self._reads.__anext__()
            data: bytes = await ref
        except StopAsyncIteration:
            raise anyio.EndOfStream from None
        except Exception:  # the actor or its node is gone: the connection ended
            raise anyio.EndOfStream from None
        return data

    async def send_eof(self) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._actor.close.remote()


class RayHandle:
    """The server's handle on a runner that a RunnerHost actor started on some node."""

    def __init__(self, actor: Any, pid: int, node_id: str, node: str | None) -> None:
        self.actor = actor
        self.pid = pid
        self.node_id: str | None = node_id
        self.node = node
        self.lost: str | None = None

    async def wait(self) -> int:
        try:
            code: int = await self.actor.wait.remote()
        except Exception as exc:
            self.lost = f"{type(exc).__name__}"
            return NODE_LOST
        return code

    def signal(self, sig: signal.Signals) -> None:
        self.actor.signal.remote(int(sig))  # fire and forget: a lost node has nothing to signal

    def describe_exit(self, returncode: int | None) -> str:
        from ..runner.spawn import describe_exit

        if returncode == NODE_LOST:
            return f"the runner's node {self.node} was lost ({self.lost})"
        return f"{describe_exit(returncode)} on node {self.node}"

    async def tail(self, count: int = 3) -> str:
        try:
            text: str = await self.actor.tail.remote(count)
        except Exception:
            return ""
        return text

    async def recent(self, count: int) -> tuple[str, ...]:
        try:
            lines: tuple[str, ...] = await self.actor.recent.remote(count)
        except Exception:  # the node is gone: its log with it
            return ()
        return tuple(lines)

    async def release(self) -> None:
        import ray

        with contextlib.suppress(Exception):
            ray.kill(self.actor)
