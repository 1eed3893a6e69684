"""ModelManager.launch through the real planning path: catalog, engine matching, memory check, hub."""

from __future__ import annotations

import importlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import pytest
from modelyard.catalog import Catalog
from modelyard.errors import LaunchError, ModelNotFound, Unavailable
from modelyard.plugins import PluginManager
from modelyard.runner import ModelManager
from modelyard.specs import Hardware, LaunchRequest, LLMFamily, ModelSource, ModelSpec
from runner_support import TESTS, runner_env

pytestmark = pytest.mark.anyio
GiB = 1 << 30
HARDWARE = Hardware(
    system="linux", machine="x86_64", cpu_count=2, memory_total=8 * GiB, memory_available=4 * GiB
)


@pytest.fixture
async def manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModelManager]:
    monkeypatch.syspath_prepend(str(TESTS))
    engine = importlib.import_module("test_runner_engine")  # the runner finds it the same way
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    weights = tmp_path / "echo.gguf"
    weights.write_bytes(b"GGUF")
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=0.001,
        quantizations=("Q4_0",),
        sources=(ModelSource(hub="local", model_id=str(weights)),),
    )
    family = LLMFamily(
        model_name="echo-test", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )
    catalog = Catalog(registrations_dir=tmp_path / "registrations")
    catalog.register(family, persist=False)
    pm = PluginManager()
    pm.register(engine, name="echo")
    async with ModelManager(
        pm=pm, catalog=catalog, hardware=lambda: HARDWARE, runner_env=runner_env()
    ) as manager:
        yield manager


async def test_launch_chooses_the_engine_resolves_weights_and_serves(
    manager: ModelManager, tmp_path: Path
) -> None:
    uid = await manager.launch(LaunchRequest(model_name="echo-test", params={"word_delay": 0}))
    record = manager.get(uid)
    assert (record.state, record.engine, record.quantization) == ("ready", "echo", "Q4_0")
    assert record.params == {"word_delay": 0}
    chunks = [c async for c in manager.chat(uid, _chat("hello there"))]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "hello there "


async def test_unknown_model_is_not_found_and_leaves_nothing(manager: ModelManager) -> None:
    with pytest.raises(ModelNotFound, match="echo-test"):  # close match offered
        await manager.launch(LaunchRequest(model_name="echo-tset"))
    assert manager.list() == []


async def test_unknown_engine_names_the_installed_ones(manager: ModelManager) -> None:
    with pytest.raises(LaunchError, match="not installed; installed engines: echo") as info:
        await manager.launch(LaunchRequest(model_name="echo-test", model_engine="vllm"))
    assert info.value.param == "model_engine"
    assert manager.list() == []


async def test_estimate_above_free_memory_is_refused_with_the_numbers(
    manager: ModelManager,
) -> None:
    request = LaunchRequest(model_name="echo-test", params={"estimate_bytes": 6 * GiB})
    with pytest.raises(LaunchError, match=r"6\.00 GiB.*4\.00 GiB is available") as info:
        await manager.launch(request)
    assert info.value.code == "insufficient_memory"
    assert manager.list() == []


def _chat(text: str):  # type: ignore[no-untyped-def]
    from modelyard.schemas import ChatCompletionRequest, ChatMessage

    return ChatCompletionRequest(model="m", messages=[ChatMessage(role="user", content=text)])


async def test_download_progress_is_visible_and_requests_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub is faked here (no model hub on this machine); what is tested is the manager's state."""
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.syspath_prepend(str(TESTS))
    pm = PluginManager()
    pm.register(importlib.import_module("test_runner_engine"), name="echo")
    spec = ModelSpec(
        model_format="ggufv2",
        model_size_in_billions=0.001,
        quantizations=("Q4_0",),
        sources=(
            ModelSource(
                hub="huggingface",
                model_id="example/echo-GGUF",
                file_name_template="echo-{quantization}.gguf",
            ),
        ),
    )
    family = LLMFamily(
        model_name="echo-hub", model_ability=("chat",), context_length=2048, model_specs=(spec,)
    )
    catalog = Catalog(registrations_dir=tmp_path / "registrations")
    catalog.register(family, persist=False)
    halfway, release = threading.Event(), threading.Event()
    weights = tmp_path / "downloaded.gguf"
    weights.write_bytes(b"GGUF")

    def fake_resolve(
        spec: ModelSpec, quantization: str, *, progress: Callable[[float], None]
    ) -> Path:
        progress(0.5)
        halfway.set()
        release.wait(10)
        return weights

    async with ModelManager(
        pm=pm,
        catalog=catalog,
        hardware=lambda: HARDWARE,
        resolve=fake_resolve,
        runner_env=runner_env(),
    ) as manager:
        uid = await manager.launch(LaunchRequest(model_name="echo-hub"), wait_ready=False)
        await anyio.to_thread.run_sync(halfway.wait, 10)
        assert manager.progress(uid) == {
            "uid": uid,
            "state": "downloading",
            "progress": 0.5,
            "error": None,
            "replicas": [],  # none started before the weights are here
        }
        with pytest.raises(Unavailable, match=r"is downloading \(50% done\)"):
            manager.chat(uid, _chat("hi"))
        release.set()
        with anyio.fail_after(30):
            while manager.get(uid).state != "ready":
                await anyio.sleep(0.05)
        assert manager.get(uid).pid is not None
