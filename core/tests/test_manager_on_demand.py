"""Models on demand in ModelManager, with real runner subprocesses hosting the "echo" engine:
eviction never touches a model with a request in flight, a per-request keep_alive of 0 unloads
the model after the request, an unloaded model reloads on ensure_ready, abort ends one request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest
from modelyard.catalog.store import select_spec
from modelyard.errors import (
    InvalidRequest,
    LaunchError,
    ModelNotFound,
    NotFound,
    RequestAborted,
    Unavailable,
)
from modelyard.runner import ModelManager
from modelyard.specs import Estimate, Hardware, LLMFamily, ModelSource, ModelSpec
from runner_support import runner_env
from test_manager import alive, chat, collect, eventually, plan

pytestmark = pytest.mark.anyio


@pytest.fixture
async def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelManager]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(
        runner_env=runner_env(), terminate_grace=3, max_loaded_models=1
    ) as manager:
        yield manager


async def test_a_busy_model_is_never_evicted_and_an_idle_one_is(
    manager: ModelManager, tmp_path: Path
) -> None:
    first = await manager.start(plan(tmp_path, word_delay=0.2), uid="first")
    first_pid = manager.get(first).pid
    assert first_pid is not None
    stream = manager.chat(first, chat("one two three four five six"))
    await anext(stream)  # in flight
    with pytest.raises(Unavailable, match="requests are in flight on first") as refused:
        await manager.start(plan(tmp_path), uid="second")
    assert (refused.value.status, refused.value.code) == (503, "no_room")
    assert manager.get(first).state == "ready"
    await stream.aclose()

    second = await manager.start(plan(tmp_path), uid="second")
    evicted = manager.get(first)
    assert (evicted.state, evicted.pid) == ("unloaded", None) and not alive(first_pid)
    assert "--max-loaded-models is 1" in evicted.events[-1].reason
    assert [e.event for e in manager.get(second).events] == ["made_room", "loaded"]

    # A request for the unloaded one loads it again, evicting the other (now idle) in turn.
    reloaded = await manager.ensure_ready(first)
    assert (reloaded.state, reloaded.loads) == ("ready", 2)
    assert manager.get(second).state == "unloaded"
    assert await collect(manager.chat(first, chat("back again"))) == "back again "


async def test_keep_alive_zero_on_a_request_unloads_after_it(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await manager.start(plan(tmp_path), uid="brief")
    pid = manager.get(uid).pid
    assert pid is not None
    request = msgspec.structs.replace(chat("hello there"), keep_alive=0)
    assert await collect(manager.chat(uid, request)) == "hello there "
    await eventually(lambda: manager.get(uid).state == "unloaded")
    assert not alive(pid)
    assert "idle for 0 s" in manager.get(uid).events[-1].reason
    with pytest.raises(InvalidRequest, match='"5m"'):
        manager.chat(uid, msgspec.structs.replace(chat("x"), keep_alive="whenever"))


async def test_abort_ends_one_request_and_tells_the_runner(
    manager: ModelManager, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    uid = await manager.start(plan(tmp_path, word_delay=0.2, events=str(events)), uid="m")
    stream = manager.chat(uid, chat("a b c d e f g h", tag="victim"), request_id="rid-1")
    await anext(stream)
    assert manager.abort(uid, "rid-1") == {"msg": "DONE"}
    with pytest.raises(RequestAborted, match="rid-1"):
        async for _ in stream:
            pass
    # The runner cancelled it in the engine: the echo engine logs a stream closed early.
    await eventually(lambda: events.exists() and "closed victim" in events.read_text())
    with pytest.raises(NotFound, match="no request 'rid-1'"):
        manager.abort(uid, "rid-1")
    with anyio.fail_after(10):
        assert await collect(manager.chat(uid, chat("still here"))) == "still here "


async def test_memory_pressure_evicts_the_least_recently_used_idle_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Models of 400 MiB each on a machine with 1 GiB for them (free memory drops by 400 MiB per
    runner): the third one unloads the least recently used of the first two."""
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    mib = 1 << 20
    sized = Estimate(weights=400 * mib, kv_cache=0, overhead=0)
    manager: ModelManager

    def machine() -> Hardware:
        running = sum(1 for record in manager.list() if record.pid is not None)
        return Hardware(
            system="linux", machine="x86_64", cpu_count=2, memory_total=4096 * mib,
            memory_available=(1024 - 400 * running) * mib,
        )  # fmt: skip

    async with ModelManager(
        runner_env=runner_env(), terminate_grace=3, hardware=machine
    ) as manager:
        for uid in ("a", "b"):
            await manager.start(msgspec.structs.replace(plan(tmp_path), estimate=sized), uid=uid)
        await collect(manager.chat("a", chat("a is used last")))
        await manager.start(msgspec.structs.replace(plan(tmp_path), estimate=sized), uid="c")
        assert [manager.get(uid).state for uid in "abc"] == ["ready", "unloaded", "ready"]
        assert "it needs about 400.0 MiB and 224.0 MiB is available" in (
            manager.get("b").events[-1].reason
        )


async def test_a_reload_slower_than_load_wait_is_a_503_with_progress_then_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(runner_env=runner_env(), terminate_grace=3, load_wait=0.2) as manager:
        uid = await manager.start(plan(tmp_path, load_delay=2), uid="slow")
        once = msgspec.structs.replace(chat("bye"), keep_alive="0s")
        assert await collect(manager.chat(uid, once)) == "bye "
        await eventually(lambda: manager.get(uid).state == "unloaded")
        with pytest.raises(Unavailable, match=r"loading on demand \(loading, \d+% done\)") as info:
            await manager.ensure_ready(uid)
        assert (info.value.code, info.value.retry_after) == ("model_loading", 5)
        await eventually(lambda: manager.get(uid).state == "ready")  # the reload went on
        assert (await manager.ensure_ready(uid)).loads == 2


class OneFamily:
    """A catalog of one family (the CatalogLike a launch needs)."""

    def __init__(self, family: LLMFamily) -> None:
        self.family = family

    def get(self, name: str, model_type: str | None = None) -> LLMFamily:
        if name != self.family.model_name:
            raise ModelNotFound(f"model {name!r} is not in the catalog")
        return self.family

    def select_spec(self, family: LLMFamily, **filters: Any) -> tuple[ModelSpec, str]:
        return select_spec(family, **filters)


async def test_auto_launch_tries_each_spec_and_says_why_none_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    source = ModelSource(hub="huggingface", model_id="org/repo")
    specs = tuple(
        ModelSpec(
            model_format="mlx",
            model_size_in_billions=size,
            quantizations=("4bit",),
            sources=(source,),
        )
        for size in (1, 3)
    )
    family = LLMFamily(
        model_name="mlx-only", model_ability=("chat",), context_length=2048, model_specs=specs
    )
    async with ModelManager(
        runner_env=runner_env(), catalog=OneFamily(family), auto_launch=True
    ) as manager:
        with pytest.raises(LaunchError, match="no spec of mlx-only that can run here") as info:
            await manager.ensure_ready("mlx-only")
        assert "mlx 1B [4bit]" in info.value.message and "mlx 3B [4bit]" in info.value.message
        with pytest.raises(ModelNotFound, match="not in the catalog"):
            await manager.ensure_ready("nope")
        assert manager.list() == []
