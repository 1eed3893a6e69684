"""MicroBatcher, the dynamic batching of embeddings and rerank, with a fake batch function."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from modelyard_transformers.batching import MicroBatcher


class Recorder:
    """A batch function that records each call's items; ``gate`` can hold a call in its thread."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: list[str]) -> list[str]:
        self.calls.append(list(items))
        self.gate.wait(10)
        if self.fail_on in items:
            raise ValueError(f"cannot encode {self.fail_on!r}")
        return [item.upper() for item in items]


async def submit_spread(
    batcher: MicroBatcher[str], groups: list[list[str]], gap_s: float
) -> list[Any]:
    """Submit each group as one request, ``gap_s`` apart, and gather every reply."""
    tasks = []
    for group in groups:
        tasks.append(asyncio.create_task(batcher.submit(group)))
        await asyncio.sleep(gap_s)
    try:
        # A hold that missed its end would otherwise keep the test for wait_s.
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
    finally:
        await batcher.aclose()


def test_a_burst_of_requests_is_one_batch_and_each_gets_its_own_results() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_items=64, wait_s=0.5)
    groups = [[f"s{i}"] for i in range(10)] + [["a", "b", "c"]]
    replies = asyncio.run(submit_spread(batcher, groups, gap_s=0.001))
    assert run.calls == [[item for group in groups for item in group]]
    assert replies == [[item.upper() for item in group] for group in groups]
    assert batcher.stats.as_dict()["batches_by_requests"] == {11: 1}


def test_requests_after_a_quiet_gap_start_a_new_batch() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_items=64, wait_s=0.01, max_wait_s=0.01)
    replies = asyncio.run(submit_spread(batcher, [["x"], ["y"]], gap_s=0.5))
    assert run.calls == [["x"], ["y"]]
    assert replies == [["X"], ["Y"]]


def test_the_hold_ends_at_max_items_without_waiting_for_the_gap() -> None:
    run = Recorder()
    # A gap this long would hold the test for minutes if max_items did not end the burst.
    batcher = MicroBatcher(run, max_items=4, wait_s=300, max_wait_s=300)
    groups = [["a", "b"], ["c", "d"], ["e"]]
    replies = asyncio.run(submit_spread(batcher, groups, gap_s=0))
    assert replies == [["A", "B"], ["C", "D"], ["E"]]
    assert run.calls[0] == ["a", "b", "c", "d"]


def test_requests_that_arrive_during_a_batch_are_gathered_into_the_next() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_items=64, wait_s=0)

    async def main() -> list[Any]:
        run.gate.clear()  # hold the first batch in its thread
        first = asyncio.create_task(batcher.submit(["first"]))
        while not run.calls:  # until the batch function runs "first"
            await asyncio.sleep(0.01)
        later = [asyncio.create_task(batcher.submit([f"later{i}"])) for i in range(5)]
        await asyncio.sleep(0.05)
        run.gate.set()
        try:
            return await asyncio.gather(first, *later)
        finally:
            await batcher.aclose()

    replies = asyncio.run(main())
    assert run.calls == [["first"], [f"later{i}" for i in range(5)]]
    assert replies == [["FIRST"]] + [[f"LATER{i}"] for i in range(5)]


def test_a_request_bigger_than_max_items_goes_alone_and_whole() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_items=2, wait_s=0.5)
    replies = asyncio.run(submit_spread(batcher, [["a"], ["b", "c", "d"], ["e"]], gap_s=0))
    assert replies == [["A"], ["B", "C", "D"], ["E"]]
    assert ["b", "c", "d"] in run.calls and all(len(c) <= 3 for c in run.calls)


def test_a_failing_batch_fails_its_requests_and_the_next_batch_still_runs() -> None:
    run = Recorder(fail_on="bad")
    batcher = MicroBatcher(run, max_items=64, wait_s=0.5)

    async def main() -> tuple[list[Any], list[str]]:
        replies = await asyncio.gather(
            batcher.submit(["ok"]), batcher.submit(["bad"]), return_exceptions=True
        )
        after = await batcher.submit(["after"])
        await batcher.aclose()
        return replies, after

    (ok, bad), after = asyncio.run(main())
    assert isinstance(ok, ValueError) and isinstance(bad, ValueError)
    assert "cannot encode 'bad'" in str(bad)
    assert after == ["AFTER"]


def test_a_cancelled_caller_does_not_disturb_the_others() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_items=64, wait_s=0.2)

    async def main() -> list[str]:
        gone = asyncio.create_task(batcher.submit(["gone"]))
        kept = asyncio.create_task(batcher.submit(["kept"]))
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        try:
            return await kept
        finally:
            await batcher.aclose()

    assert asyncio.run(main()) == ["KEPT"]
