"""Engine threads hand items to the event loop with one wakeup for all that queued meanwhile."""

from __future__ import annotations

import asyncio
import threading

import anyio
import pytest
from modelyard.loop_handoff import LoopHandoff, received
from modelyard.runner.inbox import Inbox

pytestmark = pytest.mark.anyio


async def test_items_posted_while_the_loop_is_busy_share_one_wakeup_and_keep_their_order() -> None:
    loop = asyncio.get_running_loop()
    wakeups = 0
    original = loop.call_soon_threadsafe

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal wakeups
        wakeups += 1
        return original(*args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
    try:
        handoff = LoopHandoff(loop)
        seen: list[int] = []

        def produce(start: int) -> None:
            for i in range(start, start + 50):
                handoff.post(seen.append, i)

        # Two "engine threads" post while the loop is blocked (not running callbacks).
        threads = [threading.Thread(target=produce, args=(s,)) for s in (0, 1000)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert seen == []
        await asyncio.sleep(0)
        await asyncio.sleep(0)
    finally:
        del loop.call_soon_threadsafe
    assert wakeups == 1
    assert [i for i in seen if i < 1000] == list(range(50))
    assert [i for i in seen if i >= 1000] == list(range(1000, 1050))


async def test_post_after_the_loop_closed_raises_and_a_later_post_tries_again() -> None:
    loop = asyncio.new_event_loop()
    handoff = LoopHandoff(loop)
    loop.close()
    with pytest.raises(RuntimeError):
        handoff.post(print, "x")
    with pytest.raises(RuntimeError):  # not swallowed as "a wakeup is already on its way"
        handoff.post(print, "y")


async def test_received_takes_queued_items_and_ends_with_the_stream() -> None:
    send, receive = anyio.create_memory_object_stream[int](10)
    for i in range(3):
        send.send_nowait(i)
    send.close()
    async with receive:
        assert [item async for item in received(receive)] == [0, 1, 2]


async def test_inbox_hands_frames_over_in_order_and_reports_close_and_deadline() -> None:
    loop = asyncio.get_running_loop()
    late = Inbox(loop.time() + 0.01)
    assert late.take() is None
    await late.wait()
    assert late.expired and not late.closed  # nothing came before the deadline
    inbox = Inbox()
    assert inbox.take() is None
    loop.call_soon(inbox.put, "a")
    await inbox.wait()
    inbox.put("b")
    assert [inbox.take(), inbox.take(), inbox.take()] == ["a", "b", None]
    loop.call_soon(inbox.close)
    await inbox.wait()
    assert inbox.closed and not inbox.expired
    inbox.put("late")  # a reply after the caller left is dropped
    assert inbox.take() is None


async def test_a_closed_inbox_never_expires() -> None:
    loop = asyncio.get_running_loop()
    inbox = Inbox(loop.time() + 0.01)
    inbox.close()
    await asyncio.sleep(0.05)
    assert not inbox.expired
