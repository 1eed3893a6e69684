"""The frames that came for one call, waiting for the task that made it.

The server's reader puts a runner's replies here; the calling task takes them. anyio's memory
streams cost a checkpoint (one more pass of the event loop) and a fresh Event per item, which on
a streamed token is a large part of the server's CPU; a deque and a bare future cost neither.
The server runs on asyncio (uvicorn), and cancelling the waiting task works as with any await;
deadlines use the loop's clock, which is ``anyio.current_time`` there.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any


class Inbox:
    def __init__(self) -> None:
        self._frames: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False

    def put(self, frame: Any) -> None:
        """From the reader; dropped once the caller went away (its Cancel is on the way)."""
        if not self.closed:
            self._frames.append(frame)
            self._wake()

    def close(self) -> None:
        """No more frames: the call ended, or the runner is gone."""
        self.closed = True
        self._wake()

    def take(self) -> Any | None:
        """The next frame if one is here, else None (see ``closed``)."""
        return self._frames.popleft() if self._frames else None

    async def wait(self, deadline: float = math.inf) -> bool:
        """Until a frame arrives or the inbox is closed (True), or the loop's clock passes
        ``deadline`` (False). A timer handle, not a cancel scope: it is set per streamed token."""
        if self._frames or self.closed:
            return True
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = None if deadline == math.inf else loop.call_at(deadline, self._wake)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()
        return bool(self._frames) or self.closed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
