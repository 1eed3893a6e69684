"""Where a runner process lives, as the server sees it: wait for it, signal it, read its last output.

``RunnerProcess`` drives every runner the same way (frames over a byte stream, heartbeat, deadlines)
through this seam; ``LocalHandle`` is a subprocess of the server (the embedded default), and the
cluster's ``RayHandle`` (``modelyard.cluster``) a runner that a Ray actor started on another node.
"""

from __future__ import annotations

import contextlib
import os
import signal
from typing import Protocol

from anyio.abc import Process

from .spawn import RunnerOutput, describe_exit


class RunnerHandle(Protocol):
    pid: int  # the runner's pid on its own machine
    node: str | None  # the address of the node it runs on; None: this machine
    node_id: str | None  # the cluster's id of that node

    async def wait(self) -> int:
        """The runner's exit status, once it has exited (negative: killed by that signal)."""
        ...

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the runner's process group (engines fork workers); gone is fine."""
        ...

    def describe_exit(self, returncode: int | None) -> str: ...

    async def tail(self, count: int = 3) -> str:
        """The runner's last output lines, to explain a failure."""
        ...

    async def recent(self, count: int) -> tuple[str, ...]:
        """The runner's last ``count`` output lines as they are now (the log the API shows)."""
        ...

    async def release(self) -> None:
        """Free what hosts the runner once it has exited."""
        ...


class LocalHandle:
    """A runner subprocess of this server, in a process group of its own."""

    node: str | None = None
    node_id: str | None = None

    def __init__(self, process: Process, output: RunnerOutput) -> None:
        self.process = process
        self.output = output
        self.pid = process.pid

    async def wait(self) -> int:
        return await self.process.wait()

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def describe_exit(self, returncode: int | None) -> str:
        return describe_exit(returncode)

    async def tail(self, count: int = 3) -> str:
        return await self.output.tail(count)

    async def recent(self, count: int) -> tuple[str, ...]:
        return self.output.recent(count)

    async def release(self) -> None:
        pass
