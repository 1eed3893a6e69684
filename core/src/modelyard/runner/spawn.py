"""Starting a runner process and getting its connection; its output forwarded to the server's log.

The server listens on a Unix socket in a fresh private directory (``mkdtemp``: mode 0700), spawns
``python -m modelyard.runner --socket PATH`` with an argv list (no shell), accepts exactly one
connection and checks, where the OS tells, that the peer is that child. The runner's stdout and
stderr (Python logging and the engine's native output alike) go line by line to the server's
logger ``modelyard.runner.output``, prefixed with the model uid, so they rotate with the server's
log; the last lines are kept to explain a crash.
"""

from __future__ import annotations

import collections
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process, SocketAttribute, SocketStream, TaskGroup

from ..errors import LaunchError

output_log = logging.getLogger("modelyard.runner.output")
CONNECT_TIMEOUT = 60.0  # interpreter start plus imports on a busy machine
MAX_LINE = 64 * 1024
KEPT_LINES = 200  # for crash reports and the log tail the API and the web UI show
_HINTS = {
    signal.SIGKILL: "killed; out of memory?",
    signal.SIGSEGV: "segmentation fault in the engine",
    signal.SIGABRT: "aborted by the engine",
    signal.SIGBUS: "bus error in the engine",
    signal.SIGTERM: "terminated",
}


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "runner closed its connection"
    if returncode < 0:
        sig = signal.Signals(-returncode)
        hint = _HINTS.get(sig)
        return f"runner exited with {sig.name}" + (f" ({hint})" if hint else "")
    return f"runner exited with code {returncode}"


class RunnerOutput:
    """Forwards one runner's output to the log and keeps its last lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: collections.deque[str] = collections.deque(maxlen=KEPT_LINES)
        self.done = anyio.Event()

    async def pump(self, stream: ByteReceiveStream) -> None:
        pending = b""
        try:
            async for chunk in stream:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self._emit(line)
                if len(pending) > MAX_LINE:
                    self._emit(pending)
                    pending = b""
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        finally:
            self._emit(pending)
            self.done.set()

    def _emit(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            self.lines.append(text)
            output_log.info("[%s] %s", self.name, text)

    def recent(self, count: int) -> tuple[str, ...]:
        return tuple(self.lines)[-count:] if count > 0 else ()

    async def tail(self, count: int = 3) -> str:
        """The last lines, once the output has ended (or after a short wait)."""
        with anyio.move_on_after(1):
            await self.done.wait()
        return " | ".join(self.recent(count))


async def start_runner(
    *,
    name: str,
    tg: TaskGroup,
    python: str | None = None,
    env: Mapping[str, str] | None = None,
    preload: str | None = None,
) -> tuple[Process, SocketStream, RunnerOutput]:
    """A running runner process, its connection, and its output (pumped in ``tg``). ``python``:
    the interpreter of the engine's environment (default: the server's own); ``preload``: an
    engine whose declared modules the runner imports before it connects."""
    workdir = Path(tempfile.mkdtemp(prefix="modelyard-runner-"))
    path = workdir / "sock"
    output = RunnerOutput(name)
    try:
        async with await anyio.create_unix_listener(path) as listener:
            os.chmod(path, 0o600)
            argv = [python or sys.executable, "-m", "modelyard.runner", "--socket", str(path)]
            process = await anyio.open_process(
                [*argv, "--preload", preload] if preload else argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                # Own process group: Ctrl-C in the server's terminal does not hit runners, and the
                # group can be killed whole (engines that fork workers, e.g. vLLM).
                start_new_session=True,
            )
            assert process.stdout is not None
            tg.start_soon(output.pump, process.stdout)
            try:
                stream = await _accept(listener, process, output)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
                raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # a connected socket needs no path
    return process, stream, output


async def _accept(listener: object, process: Process, output: RunnerOutput) -> SocketStream:
    """The runner's connection, or a LaunchError if it exits (or hangs) before connecting."""
    accepted: list[SocketStream] = []
    async with anyio.create_task_group() as tg:

        async def accept() -> None:
            accepted.append(await listener.accept())  # type: ignore[attr-defined]
            tg.cancel_scope.cancel()

        async def exited() -> None:
            await process.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(accept)
        tg.start_soon(exited)
        await anyio.sleep(CONNECT_TIMEOUT)
        tg.cancel_scope.cancel()
    if not accepted:
        if process.returncode is None:
            process.kill()
            await process.wait()
        tail = await output.tail()
        raise LaunchError(
            f"the runner did not start: {describe_exit(process.returncode)}"
            + (f"; last output: {tail}" if tail else "")
        )
    stream = accepted[0]
    try:
        _check_peer(stream, process.pid)
    except LaunchError:
        await stream.aclose()
        raise
    return stream


def _check_peer(stream: SocketStream, pid: int) -> None:
    # The directory is private already; this also rules out a stray process of the same user.
    if not hasattr(socket, "SO_PEERCRED"):  # Linux only; macOS relies on the private directory
        return
    raw: socket.socket = stream.extra(SocketAttribute.raw_socket)
    creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    peer_pid, _, _ = struct.unpack("3i", creds)
    if peer_pid != pid:
        raise LaunchError(
            f"unexpected process {peer_pid} connected to the runner socket (expected {pid})"
        )
