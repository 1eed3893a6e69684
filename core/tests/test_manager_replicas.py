"""Replicas in the embedded default: N runner subprocesses of the echo test engine behind one uid."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from modelyard.errors import InvalidRequest, LaunchError, NotFound, Unavailable
from modelyard.runner import ModelManager
from modelyard.schemas import ChatCompletionRequest, ChatMessage
from modelyard.specs import Estimate, Hardware
from runner_support import runner_env
from test_manager import alive, collect, eventually, plan

pytestmark = pytest.mark.anyio

GiB = 1024**3


@pytest.fixture
async def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelManager]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(runner_env=runner_env(), max_pending=8, terminate_grace=3) as manager:
        yield manager


def ask(text: str, system: str | None = None) -> ChatCompletionRequest:
    messages = [ChatMessage(role="system", content=system)] if system else []
    return ChatCompletionRequest(
        model="m", messages=[*messages, ChatMessage(role="user", content=text)]
    )


async def served_by(manager: ModelManager, uid: str, request: ChatCompletionRequest) -> int:
    """The pid of the runner that answered (the echo engine answers ``pid`` with its own)."""
    answer = await collect(manager.chat(uid, request))
    return int(answer.split("pid=")[1].split()[0])


def pids(manager: ModelManager, uid: str) -> list[int]:
    return [r.pid for r in manager.get(uid).replicas if r.pid is not None]


async def start(manager: ModelManager, tmp_path: Path, replica: int, **fields: Any) -> str:
    return await manager.start(msgspec.structs.replace(plan(tmp_path), replica=replica, **fields))


async def test_replicas_start_together_and_a_busy_one_gets_no_new_request(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 2, params={"word_delay": 0.2})
    record = manager.get(uid)
    assert (record.state, record.replica) == ("ready", 2)
    assert [(r.index, r.state) for r in record.replicas] == [(0, "ready"), (1, "ready")]
    first, second = pids(manager, uid)
    assert first != second and alive(first) and alive(second)

    busy = manager.chat(uid, ask("pid a b c d e f"))
    answering = int((await busy.__anext__())["choices"][0]["delta"]["content"].split("=")[1])
    # While that one streams, the least loaded replica takes every new request.
    other = ({first, second} - {answering}).pop()
    assert [await served_by(manager, uid, ask("pid")) for _ in range(2)] == [other, other]
    assert {r.in_flight for r in manager.get(uid).replicas} == {0, 1}
    await busy.aclose()


async def test_a_shared_prompt_prefix_goes_back_to_the_replica_that_served_it(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 2)
    agent = "You are a careful agent. " * 12  # a long shared system prompt (300 characters)
    other = "You translate everything into French. " * 8
    first = [await served_by(manager, uid, ask(f"{n} pid", agent)) for n in range(4)]
    second = [await served_by(manager, uid, ask(f"{n} pid", other)) for n in range(4)]
    assert len(set(first)) == 1 and len(set(second)) == 1
    # Without a prefix to follow, equally idle replicas take turns.
    short = {await served_by(manager, uid, ask("pid")) for _ in range(4)}
    assert short == set(pids(manager, uid))


async def test_a_lost_replica_fails_its_requests_and_the_others_keep_serving(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 2, params={"word_delay": 0.2})
    stream = manager.chat(uid, ask("pid a b c d e f g h"))
    victim = int((await stream.__anext__())["choices"][0]["delta"]["content"].split("=")[1])
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(Unavailable, match="SIGKILL"):
        async for _ in stream:
            pass
    await eventually(lambda: "error" in {r.state for r in manager.get(uid).replicas})
    record = manager.get(uid)
    assert record.state == "ready"  # one replica still serves
    lost = next(r for r in record.replicas if r.state == "error")
    assert lost.pid == victim and "SIGKILL" in (lost.error or "")
    survivor = next(pid for pid in pids(manager, uid) if pid != victim)
    assert {await served_by(manager, uid, ask("pid")) for _ in range(3)} == {survivor}


async def test_restart_lost_relaunches_only_the_lost_replica(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 2, restart_lost=True)
    victim, survivor = pids(manager, uid)
    os.kill(victim, signal.SIGKILL)
    await eventually(lambda: manager.get(uid).restarts == 1)
    await eventually(lambda: {r.state for r in manager.get(uid).replicas} == {"ready"}, 30)
    now = pids(manager, uid)
    assert survivor in now and victim not in now and len(now) == 2
    assert [r.restarts for r in manager.get(uid).replicas] == [1, 0]
    assert {await served_by(manager, uid, ask("pid")) for _ in range(4)} == set(now)


async def test_scaling_up_adds_runners_and_down_drains_before_stopping(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 1, params={"word_delay": 0.1})
    (original,) = pids(manager, uid)
    record = await manager.scale(uid, 3)
    assert (record.replica, [r.index for r in record.replicas]) == (3, [0, 1, 2])
    assert {r.state for r in record.replicas} == {"ready"} and original in pids(manager, uid)

    # Removing a replica with a request in flight lets the request finish first.
    stream = manager.chat(uid, ask("pid a b c d e"))
    first = await stream.__anext__()
    busy = int(first["choices"][0]["delta"]["content"].split("=")[1])
    index = next(r.index for r in manager.get(uid).replicas if r.pid == busy)
    async with anyio.create_task_group() as tg:
        tg.start_soon(manager.remove_replica, uid, index)
        rest = "".join([c["choices"][0]["delta"].get("content", "") async for c in stream])
    assert rest == "a b c d e "  # drained, not cut
    assert not alive(busy) and busy not in pids(manager, uid)

    record = await manager.scale(uid, 1)
    assert record.replica == 1 and len(record.replicas) == 1
    (kept,) = pids(manager, uid)
    assert [pid for pid in (original, busy) if alive(pid) and pid != kept] == []
    assert [e.event for e in record.events].count("scaled") == 3
    await manager.terminate(uid)
    assert not alive(kept)


async def test_scaling_bad_requests_are_400s_and_404s(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await start(manager, tmp_path, 1)
    with pytest.raises(InvalidRequest, match="at least 1") as info:
        await manager.scale(uid, 0)
    assert info.value.param == "replica"
    with pytest.raises(InvalidRequest, match="last one"):
        await manager.remove_replica(uid, 0)
    with pytest.raises(NotFound, match=r"no replica 7 .*its replicas: 0"):
        await manager.remove_replica(uid, 7)


async def test_idle_unload_stops_every_replica_and_a_request_brings_them_all_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(runner_env=runner_env(), keep_alive=0.5, terminate_grace=3) as manager:
        uid = await start(manager, tmp_path, 2)
        before = pids(manager, uid)
        await eventually(lambda: manager.get(uid).state == "unloaded")
        assert manager.get(uid).replicas == [] and not any(alive(pid) for pid in before)
        await manager.scale(uid, 3)  # an unloaded model keeps the count for its next load
        await manager.ensure_ready(uid)
        record = manager.get(uid)
        assert (record.state, record.replica, len(record.replicas)) == ("ready", 3, 3)
        assert [r.index for r in record.replicas] == [2, 3, 4]  # indices are never reused


async def test_replicas_that_do_not_fit_in_memory_are_refused_with_the_numbers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    # The fake machine's free memory stays 5 GiB: two replicas of 2 GiB fit, three more do not.
    small = Hardware("linux", "x86_64", 2, 8 * GiB, 5 * GiB, ())
    estimate = Estimate(weights=2 * GiB, kv_cache=0, overhead=0)
    async with ModelManager(runner_env=runner_env(), hardware=lambda: small) as manager:
        uid = await start(manager, tmp_path, 2, estimate=estimate)
        with pytest.raises(LaunchError, match=r"3 more replica.*not enough memory") as info:
            await manager.scale(uid, 5)
        assert (info.value.status, info.value.code) == (400, "insufficient_memory")
        assert manager.get(uid).replica == 2 and len(pids(manager, uid)) == 2
