"""race_disconnect: a non-streamed request's work, cancelled when its client leaves or the server
stops, and never confused with anyone else's cancellation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
from modelyard.errors import Unavailable
from modelyard.server.sse import ClientGone, race_disconnect
from starlette.requests import Request

pytestmark = pytest.mark.anyio


class Client:
    """An ASGI receive() whose disconnect comes when the test says so."""

    def __init__(self) -> None:
        self.left = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.left.wait()
        return {"type": "http.disconnect"}


def request(client: Client, stopping: anyio.Event | None = None) -> Request:
    app = SimpleNamespace(state=SimpleNamespace(stopping=stopping))
    return Request({"type": "http", "app": app}, client.receive)


class Work:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> str:
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return "never"


async def test_the_result_comes_back_and_no_watcher_is_left() -> None:
    before = len(asyncio.all_tasks())

    async def work() -> str:
        await asyncio.sleep(0)
        return "answer"

    assert await race_disconnect(request(Client(), anyio.Event()), work) == "answer"
    await asyncio.sleep(0)  # let the cancelled watchers finish
    assert len(asyncio.all_tasks()) == before


async def test_a_client_that_leaves_cancels_the_work() -> None:
    client, work = Client(), Work()
    task = asyncio.ensure_future(race_disconnect(request(client), work))
    await work.started.wait()
    client.left.set()
    with pytest.raises(ClientGone):
        await task
    assert work.cancelled


async def test_a_stopping_server_cancels_the_work_with_a_503() -> None:
    stopping, work = anyio.Event(), Work()
    task = asyncio.ensure_future(race_disconnect(request(Client(), stopping), work))
    await work.started.wait()
    stopping.set()
    with pytest.raises(Unavailable, match="shutting down"):
        await task
    assert work.cancelled


async def test_the_works_own_error_comes_through() -> None:
    async def work() -> str:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        await race_disconnect(request(Client()), work)


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    client, work = Client(), Work()
    task = asyncio.ensure_future(race_disconnect(request(client), work))
    await work.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert work.cancelled


async def test_after_a_client_left_the_task_carries_no_pending_cancel() -> None:
    client, work = Client(), Work()

    async def handler() -> int:
        with pytest.raises(ClientGone):
            await race_disconnect(request(client), work)
        await asyncio.sleep(0)  # would raise CancelledError if a cancel were still pending
        task = asyncio.current_task()
        assert task is not None
        return task.cancelling()

    task = asyncio.ensure_future(handler())
    await work.started.wait()
    client.left.set()
    assert await task == 0
