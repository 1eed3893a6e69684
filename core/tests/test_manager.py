"""ModelManager with real runner subprocesses hosting the "echo" test engine (test_runner_engine.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from modelyard.errors import (
    Conflict,
    InvalidRequest,
    LaunchError,
    ModelNotFound,
    Overloaded,
    Unavailable,
)
from modelyard.runner import LaunchPlan, ModelManager
from modelyard.schemas import ChatCompletionRequest, ChatMessage, RerankRequest
from modelyard.specs import LLMFamily, ModelSource, ModelSpec
from runner_support import TESTS, runner_env

pytestmark = pytest.mark.anyio


@pytest.fixture
async def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelManager]:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(runner_env=runner_env(), max_pending=4, terminate_grace=3) as manager:
        yield manager


def plan(tmp_path: Path, **params: Any) -> LaunchPlan:
    weights = tmp_path / "echo.gguf"
    weights.write_bytes(b"GGUF")
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=0.001,
        quantizations=("none",),
        sources=(ModelSource(hub="local", model_id=str(weights)),),
    )
    family = LLMFamily(
        model_name="echo-test", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )
    return LaunchPlan(
        model_name="echo-test",
        model_type="LLM",
        family=family,
        spec=spec,
        quantization="none",
        engine="echo",
        params=params,
        path=str(weights),
    )


def chat(text: str, tag: str = "-") -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content=text)], user=tag
    )


async def collect(stream: AsyncIterator[dict[str, Any]]) -> str:
    return "".join([c["choices"][0]["delta"].get("content", "") async for c in stream])


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll until ``check`` holds; the timeout only bounds a hang, it is not a latency claim."""
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.05)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_launch_chat_terminate_frees_the_process(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await manager.start(plan(tmp_path, ballast_mb=64))
    record = manager.get(uid)
    assert (uid, record.state, record.engine, record.context_length) == (
        "echo-test",
        "ready",
        "echo",
        2048,
    )
    assert "chat" in record.abilities
    pid = record.pid
    assert pid is not None and pid != os.getpid()
    assert rss_kib(pid) > 64 * 1024  # the ballast is resident in the runner, not in this process

    chunks = [c async for c in manager.chat(uid, chat("one two three"))]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "one two three "
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    ranked = await manager.rerank(
        uid, RerankRequest(model=uid, query="red fox", documents=["a fox", "red fox"])
    )
    assert [r["relevance_score"] for r in ranked["results"]] == [1.0, 2.0]

    await manager.terminate(uid)
    assert not alive(pid)  # reaped, not a zombie: its memory is back
    assert manager.list() == []
    with pytest.raises(ModelNotFound):
        manager.get(uid)


async def test_uids_default_to_the_name_then_name_n_and_taken_uid_conflicts(
    manager: ModelManager, tmp_path: Path
) -> None:
    first = await manager.start(plan(tmp_path))
    second = await manager.start(plan(tmp_path))
    assert (first, second) == ("echo-test", "echo-test-1")
    with pytest.raises(Conflict, match="already in use"):
        await manager.start(plan(tmp_path), uid="echo-test")
    assert sorted(r.uid for r in manager.list()) == ["echo-test", "echo-test-1"]


@pytest.mark.parametrize(
    ("params", "kind", "message"),
    [
        ({"fail": "error"}, InvalidRequest, "told to fail loading"),
        ({"tempreature": 1}, InvalidRequest, "unknown echo engine parameter 'tempreature'"),
        (
            {"fail": "exit"},
            LaunchError,
            "runner exited with code 3.*last output: echo: exiting as told",
        ),
        ({"fail": "segv"}, LaunchError, "SIGSEGV"),
    ],
)
async def test_failed_load_leaves_no_record_and_says_why(
    manager: ModelManager,
    tmp_path: Path,
    params: dict[str, Any],
    kind: type[Exception],
    message: str,
) -> None:
    with pytest.raises(kind, match=message):
        await manager.start(plan(tmp_path, **params), uid="broken")
    assert manager.list() == []
    with pytest.raises(ModelNotFound, match="launch failed"):
        manager.get("broken")
    # The uid is free again.
    assert await manager.start(plan(tmp_path), uid="broken") == "broken"


async def test_loading_model_answers_unavailable_with_progress(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await manager.start(plan(tmp_path, load_delay=1.5), wait_ready=False)
    assert manager.get(uid).state in ("creating", "loading")
    with pytest.raises(Unavailable, match=r"is (creating|loading) \(\d+% done\)") as info:
        manager.chat(uid, chat("hi"))
    assert info.value.retry_after
    await eventually(lambda: manager.get(uid).state == "ready")
    assert await collect(manager.chat(uid, chat("hi"))) == "hi "


async def test_cancel_a_launch_kills_the_runner(manager: ModelManager, tmp_path: Path) -> None:
    uid = await manager.start(plan(tmp_path, load_delay=30), wait_ready=False)
    await eventually(lambda: manager.get(uid).pid is not None)
    pid = manager.get(uid).pid
    assert pid is not None
    await manager.cancel(uid)
    assert not alive(pid)
    with pytest.raises(ModelNotFound, match="cancelled"):
        manager.get(uid)


async def test_sigkilled_runner_is_noticed_inflight_fails_others_serve_relaunch_works(
    manager: ModelManager, tmp_path: Path
) -> None:
    victim = await manager.start(plan(tmp_path, word_delay=0.2), uid="victim")
    bystander = await manager.start(plan(tmp_path), uid="bystander")
    pid = manager.get(victim).pid
    assert pid is not None

    stream = manager.chat(victim, chat("a b c d e f g h i j k l m n o p"))
    first = await stream.__anext__()
    assert first["choices"][0]["delta"]["content"] == "a "
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable, match="SIGKILL") as info:
        async for _ in stream:
            pass
    assert info.value.status == 503

    await eventually(lambda: manager.get(victim).state == "error", timeout=3)
    assert "SIGKILL" in (manager.get(victim).error or "")
    with pytest.raises(Unavailable, match="relaunch"):
        manager.chat(victim, chat("hi"))
    assert await collect(manager.chat(bystander, chat("still here"))) == "still here "

    assert await manager.start(plan(tmp_path), uid="victim") == "victim"
    assert manager.get(victim).pid != pid
    assert await collect(manager.chat(victim, chat("back"))) == "back "


async def test_requests_overlap_in_the_runner(manager: ModelManager, tmp_path: Path) -> None:
    uid = await manager.start(plan(tmp_path))
    answers: list[str] = []

    async def one() -> None:
        answers.append(await collect(manager.chat(uid, chat("barrier 4"))))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    # Each stream waits until four are active at once: a serialising runner would report peak=1.
    assert answers == ["peak=4 "] * 4


async def test_the_runner_freezes_what_its_load_left_before_serving(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await manager.start(plan(tmp_path))
    # A full collection would otherwise walk every object of the engine's imports during a call.
    frozen = int((await collect(manager.chat(uid, chat("frozen")))).split("=")[1])
    assert frozen > 10_000


async def test_closing_a_stream_cancels_generation_in_the_engine(
    manager: ModelManager, tmp_path: Path
) -> None:
    events = tmp_path / "events"
    uid = await manager.start(plan(tmp_path, word_delay=0.1, events=str(events)))
    stream = manager.chat(uid, chat(" ".join(["w"] * 100), tag="quitter"))
    await stream.__anext__()
    await stream.aclose()  # what the server does when the HTTP client disconnects

    def closed_line() -> list[str]:
        lines = events.read_text().splitlines() if events.exists() else []
        return [line for line in lines if line.startswith("closed quitter")]

    await eventually(lambda: bool(closed_line()))
    sent = int(closed_line()[0].split()[-1])
    assert sent < 100  # the engine stopped early instead of generating the rest
    assert await collect(manager.chat(uid, chat("next"))) == "next "  # the model keeps serving


async def test_full_queue_answers_overloaded(manager: ModelManager, tmp_path: Path) -> None:
    uid = await manager.start(plan(tmp_path, word_delay=0.2))  # max_pending=4 in the fixture
    streams = [manager.chat(uid, chat("x y z")) for _ in range(4)]
    for stream in streams:
        await stream.__anext__()  # each is now in flight
    with pytest.raises(Overloaded) as info:
        manager.chat(uid, chat("one too many"))
    assert (info.value.status, info.value.retry_after) == (429, 1)
    for stream in streams:
        await stream.aclose()
    await eventually(lambda: manager.get(uid).in_flight == 0)
    assert await collect(manager.chat(uid, chat("room again"))) == "room again "


async def test_aclose_terminates_every_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    manager = ModelManager(runner_env=runner_env())
    uids = [await manager.start(plan(tmp_path)) for _ in range(2)]  # starts itself on asyncio
    pids = [manager.get(uid).pid for uid in uids]
    await manager.aclose()
    assert all(pid is not None and not alive(pid) for pid in pids)
    assert manager.list() == []


def test_max_pending_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_MAX_PENDING", "7")
    assert ModelManager().max_pending == 7
    assert ModelManager(max_pending=3).max_pending == 3


_ORPHAN_SCRIPT = """
import sys, anyio
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from test_manager import plan, runner_env
from modelyard.runner import ModelManager

async def main():
    async with ModelManager(runner_env=runner_env()) as manager:
        uid = await manager.start(plan(Path(sys.argv[2])))
        print(manager.get(uid).pid, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def test_runner_exits_when_the_server_process_dies(tmp_path: Path) -> None:
    env = {**os.environ, "MODELYARD_HOME": str(tmp_path / "home")}
    async with await anyio.open_process(
        [sys.executable, "-c", _ORPHAN_SCRIPT, str(TESTS), str(tmp_path)], env=env
    ) as server:
        assert server.stdout is not None
        with anyio.fail_after(30):
            line = await server.stdout.receive()
        runner_pid = int(line.decode().split()[0])
        assert alive(runner_pid)
        server.kill()  # no chance to clean up: only the socket's EOF tells the runner
        await server.wait()
    await eventually(lambda: not alive(runner_pid) or _zombie(runner_pid))


def _zombie(pid: int) -> bool:
    # The runner's parent is gone, so it is reparented; until init reaps it, it may show as a zombie.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


async def test_runner_output_reaches_the_server_log(
    manager: ModelManager, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="modelyard.runner.output")
    with pytest.raises(LaunchError):
        await manager.start(plan(tmp_path, fail="exit"), uid="noisy")
    assert "[noisy] echo: exiting as told" in caplog.messages


async def test_a_runner_speaking_another_protocol_refuses_to_load_and_says_how_to_align(
    manager: ModelManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runner checks the server's protocol version before loading (engine environments may
    hold another modelyard); the launch fails with the command that brings them in line."""
    from modelyard.errors import LaunchError
    from modelyard.runner import protocol

    monkeypatch.setattr(protocol, "PROTOCOL_VERSION", protocol.PROTOCOL_VERSION + 41)
    with pytest.raises(
        LaunchError, match=r"runner protocol \d+ and the server \d+.*env install echo"
    ):
        await manager.start(plan(tmp_path), uid="mismatched")
    assert manager.list() == []


# --- hung runners, deadlines ---
@pytest.fixture
async def quick_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ModelManager]:
    """A manager that calls a runner unresponsive after 3 s of silence (short for the tests, long
    enough that a busy 2-core machine does not make a live runner look hung)."""
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(
        runner_env=runner_env(), terminate_grace=3, heartbeat_timeout=3
    ) as manager:
        yield manager


def stopped(pid: int) -> Callable[[], None]:
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT) if alive(pid) else None


async def test_a_stopped_runner_is_unresponsive_then_ready_again(
    quick_heartbeat: ModelManager, tmp_path: Path
) -> None:
    manager = quick_heartbeat
    uid = await manager.start(plan(tmp_path), uid="sleepy")
    other = await manager.start(plan(tmp_path), uid="awake")
    pid = manager.get(uid).pid
    assert pid is not None
    resume = stopped(pid)
    try:
        await eventually(lambda: manager.get(uid).state == "unresponsive", timeout=30)
        assert "heartbeat" in (manager.get(uid).error or "")
        with pytest.raises(Unavailable, match="unresponsive") as info:
            manager.chat(uid, chat("hello"))
        assert (info.value.status, info.value.code) == (503, "model_unresponsive")
        assert await collect(manager.chat(other, chat("still here"))) == "still here "
    finally:
        resume()
    await eventually(lambda: manager.get(uid).state == "ready", timeout=30)
    assert manager.get(uid).error is None
    assert await collect(manager.chat(uid, chat("awake again"))) == "awake again "


async def test_terminate_kills_a_stopped_runner(
    quick_heartbeat: ModelManager, tmp_path: Path
) -> None:
    manager = quick_heartbeat
    uid = await manager.start(plan(tmp_path))
    pid = manager.get(uid).pid
    assert pid is not None
    resume = stopped(pid)
    try:
        await eventually(lambda: manager.get(uid).state == "unresponsive", timeout=30)
        with anyio.fail_after(30):  # a bound on a hang, not a speed claim
            await manager.terminate(uid)
        assert not alive(pid)
        with pytest.raises(ModelNotFound):
            manager.get(uid)
    finally:
        resume()


async def test_restart_unresponsive_relaunches_a_hung_runner(
    quick_heartbeat: ModelManager, tmp_path: Path
) -> None:
    import msgspec

    manager = quick_heartbeat
    uid = await manager.start(msgspec.structs.replace(plan(tmp_path), restart_unresponsive=True))
    pid = manager.get(uid).pid
    assert pid is not None
    resume = stopped(pid)
    try:
        await eventually(lambda: manager.get(uid).restarts == 1, timeout=30)
        await eventually(lambda: manager.get(uid).state == "ready", timeout=60)
        assert manager.get(uid).pid != pid
        assert not alive(pid)
        assert await collect(manager.chat(uid, chat("fresh start"))) == "fresh start "
    finally:
        resume()


async def test_a_request_past_its_deadline_is_a_504_and_stops_the_engine(
    manager: ModelManager, tmp_path: Path
) -> None:
    import msgspec
    from modelyard.errors import GatewayTimeout

    events = tmp_path / "events"
    slow = msgspec.structs.replace(
        plan(tmp_path, word_delay=0.3, events=str(events)), request_timeout=1.0
    )
    uid = await manager.start(slow)
    with pytest.raises(GatewayTimeout, match="request_timeout of 1 s") as info:
        await collect(manager.chat(uid, chat(" ".join(["w"] * 50), tag="late")))
    assert (info.value.status, info.value.type) == (504, "timeout_error")

    def closed() -> bool:
        return events.exists() and "closed late" in events.read_text()

    await eventually(closed)  # the engine was told to stop, not left generating
    assert manager.get(uid).state == "ready"
    assert await collect(manager.chat(uid, chat("quick"))) == "quick "


async def test_the_managers_deadline_applies_without_a_launch_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.errors import GatewayTimeout

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    async with ModelManager(runner_env=runner_env(), request_timeout=0.5) as manager:
        uid = await manager.start(plan(tmp_path, word_delay=0.3))
        with pytest.raises(GatewayTimeout, match=r"0\.5 s"):
            await collect(manager.chat(uid, chat("a b c d e f g h")))


def test_runners_wait_briefly_in_openmp_unless_the_user_chose() -> None:
    from modelyard.runner.manager import openmp_waiting

    default = openmp_waiting({})
    assert default == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}
    # Either setting of the user's is kept and nothing is added beside it: GOMP_SPINCOUNT would
    # override an OMP_WAIT_POLICY=ACTIVE the user asked for.
    assert openmp_waiting({"OMP_WAIT_POLICY": "ACTIVE", "PATH": "/bin"}) == {
        "OMP_WAIT_POLICY": "ACTIVE"
    }
    assert openmp_waiting({"GOMP_SPINCOUNT": "0"}) == {"GOMP_SPINCOUNT": "0"}
    assert ModelManager(runner_env={"X": "1"}).runner_env == {
        **openmp_waiting(os.environ),
        "X": "1",
    }
