"""The frames that came for one call, waiting for the task that made it.

The server's reader puts a runner's replies here; the calling task takes them. anyio's memory
streams cost a checkpoint (one more pass of the event loop) and a fresh Event per item, which on
a streamed token is a large part of the server's CPU; a deque and a bare future cost neither.
The server runs on asyncio (uvicorn), and cancelling the waiting task works as with any await.
The call's deadline is one loop timer for the whole call (the loop's clock, which is
``anyio.current_time`` there), not one per wait: a wait happens per streamed token.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any


class Inbox:
    def __init__(self, deadline: float = math.inf) -> None:
        """Must be made in the event loop's thread; ``deadline`` on the loop's clock."""
        self._frames: collections.deque[Any] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.expired = False  # the deadline passed; set by the call's one timer
        self._timer: asyncio.TimerHandle | None = None
        if deadline != math.inf:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._expire)

    def put(self, frame: Any) -> None:
        """From the reader; dropped once the caller went away (its Cancel is on the way)."""
        if not self.closed:
            self._frames.append(frame)
            self._wake()

    def close(self) -> None:
        """No more frames: the call ended, or the runner is gone."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._wake()

    def take(self) -> Any | None:
        """The next frame if one is here, else None (see ``closed``)."""
        return self._frames.popleft() if self._frames else None

    async def wait(self) -> None:
        """Until a frame arrives, the inbox is closed or the deadline passes (see ``expired``)."""
        if self._frames or self.closed or self.expired:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _expire(self) -> None:
        self.expired = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
