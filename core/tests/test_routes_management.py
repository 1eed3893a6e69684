"""Management routes: launch payloads as xinference-client sends them, describe, terminate,
progress, cancel, registrations, engines, status."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import server_support as S
from modelyard import hookimpl
from modelyard.catalog import Catalog
from modelyard.plugins import PluginManager
from modelyard.specs import EngineInfo, Family, Hardware, Match, ModelSpec

pytestmark = pytest.mark.anyio
GiB = 1024**3

# Exactly what xinference-client 4.1.0 sends for launch_model(model_name=..., n_ctx=1024).
XINFERENCE_PAYLOAD = {
    "model_uid": None, "model_name": "toy-chat", "model_type": "LLM", "model_engine": None,
    "model_size_in_billions": "0_135", "model_format": "ggufv2", "quantization": "Q4_1", "replica": 1,
    "n_worker": 1, "n_gpu": "auto", "peft_model_config": None, "request_limits": None, "worker_ip": None,
    "gpu_idx": None, "replica_config": None, "model_path": None, "enable_thinking": None,
    "enable_virtual_env": None, "virtual_env_packages": None, "virtual_env_find_links": None, "envs": None,
    "n_ctx": 1024,
}  # fmt: skip


class FakeEngines:
    """A test plugin: "fake-gguf" runs GGUF specs, "fake-gpu" refuses everything with a reason."""

    @hookimpl
    def register_engines(self, register: Callable[[EngineInfo], None]) -> None:
        register(EngineInfo("fake-gguf", ("LLM",), ("chat",), ("ggufv2",), "fakelib"))
        register(EngineInfo("fake-gpu", ("LLM",), ("chat",), ("ggufv2", "pytorch"), "fakelib"))

    @hookimpl
    def match_engine(
        self, family: Family, spec: ModelSpec, quantization: str, hardware: Hardware
    ) -> list[Match]:
        return [
            Match.yes("fake-gguf")
            if spec.model_format == "ggufv2"
            else Match.no("fake-gguf", "only GGUF"),
            Match.no("fake-gpu", "needs a CUDA device; this machine has none"),
        ]


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    app, manager = S.app_with()
    app.state.catalog = Catalog(
        [S.LLM, S.EMBED, S.RERANK], registrations_dir=tmp_path / "registrations"
    )
    pm = PluginManager()
    pm.register(FakeEngines(), name="fake-engines")
    app.state.plugin_manager = pm
    app.state.hardware = lambda: Hardware("linux", "x86_64", 2, 24 * GiB, 20 * GiB)
    async with S.asgi_client(app) as http:
        http.manager = manager
        http.registrations = tmp_path / "registrations"
        yield http


async def test_launch_accepts_xinference_client_payload(client: Any) -> None:
    response = await client.post("/v1/models", json=XINFERENCE_PAYLOAD)
    assert response.status_code == 200, response.text
    assert response.json() == {"model_uid": "toy-chat"}
    request, wait_ready = client.manager.launches[0]
    assert wait_ready is True
    assert (
        request.model_name,
        request.model_engine,
        request.model_format,
        request.quantization,
    ) == ("toy-chat", None, "ggufv2", "Q4_1")
    assert request.model_size_in_billions == 0.135
    assert request.params == {"n_ctx": 1024}


async def test_launch_keeps_dotted_engine_params_and_parses_wait_ready(client: Any) -> None:
    body = {
        "model_name": "toy-chat",
        "model_uid": "x1",
        "sampling.top_k": 40,
        "download_hub": "modelscope",
    }
    for raw, expected in (("False", False), ("false", False), ("TRUE", True)):
        client.manager.records.pop("x1", None)
        response = await client.post(f"/v1/models?wait_ready={raw}", json=body)
        assert response.status_code == 200, response.text
        request, wait_ready = client.manager.launches[-1]
        assert wait_ready is expected
        assert request.params == {
            "sampling.top_k": 40
        }  # download_hub is the core's, not the engine's
        assert request.download_hub == "modelscope"
    bad = await client.post("/v1/models?wait_ready=maybe", json=body)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "wait_ready"


@pytest.mark.parametrize(
    ("body", "status", "param", "needle"),
    [
        ({"model_type": "LLM"}, 400, "model_name", "model_name"),
        ({"model_name": "toy-chat", "model_type": "image"}, 400, "model_type", "$.model_type"),
        (
            {"model_name": "toy-chat", "model_size_in_billions": "huge"},
            400,
            "model_size_in_billions",
            "huge",
        ),
        ({"model_name": "toy-chat", "replica": 0}, 400, "replica", "$.replica"),
        ({"model_name": "toy-chat", "model_uid": "has space"}, 400, "model_uid", "$.model_uid"),
        (
            {"model_name": "toy-chat", "peft_model_config": {"lora_list": []}},
            400,
            "peft_model_config",
            "LoRA",
        ),
        ({"model_name": "toy-chat", "n_worker": 2}, 400, "n_worker", "n_worker"),
        ({"model_name": "toy-chat", "n_ctxx": 512}, 400, "n_ctxx", "n_ctx"),
        ({"model_name": "toy-chta"}, 404, "model_name", "toy-chat"),
    ],
)
async def test_bad_launches_explain_themselves(
    client: Any, body: dict[str, Any], status: int, param: str, needle: str
) -> None:
    response = await client.post("/v1/models", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert needle in response.json()["detail"]
    assert not client.manager.records


async def test_launch_rejects_a_body_that_is_not_an_object(client: Any) -> None:
    for raw in (b"[]", b'"toy-chat"', b"{", b""):
        response = await client.post(
            "/v1/models", content=raw, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400 and response.json()["detail"], raw


async def test_duplicate_uid_is_409(client: Any) -> None:
    assert (await client.post("/v1/models", json={"model_name": "toy-chat"})).status_code == 200
    again = await client.post("/v1/models", json={"model_name": "toy-chat"})
    assert again.status_code == 409 and "toy-chat" in again.json()["detail"]


async def test_describe_terminate_and_unknown_uids(client: Any) -> None:
    client.manager.add("m")
    described = (await client.get("/v1/models/m")).json()
    assert (described["id"], described["object"], described["owned_by"]) == (
        "m",
        "model",
        "modelyard",
    )
    assert described["model_type"] == "LLM" and described["model_ability"] == ["chat", "generate"]
    assert described["model_size_in_billions"] == "0_135" and described["model_format"] == "ggufv2"
    assert described["pid"] == 4242 and described["model_lang"] == ["en"]
    deleted = await client.delete("/v1/models/m")
    assert deleted.json() == {"id": "m", "object": "model", "deleted": True}
    for method, path in (
        ("GET", "/v1/models/m"),
        ("DELETE", "/v1/models/m"),
        ("GET", "/v1/models/m/progress"),
        ("POST", "/v1/models/m/cancel"),
    ):
        response = await client.request(method, path)
        assert response.status_code == 404, path
        assert "'m'" in response.json()["detail"]


async def test_a_loading_model_describes_as_503_and_reports_progress(client: Any) -> None:
    client.manager.add("slow", state="loading")
    response = await client.get("/v1/models/slow")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["state"] == "loading" and "40%" in response.json()["detail"]
    progress = (await client.get("/v1/models/slow/progress")).json()
    assert progress["progress"] == 0.4 and progress["state"] == "loading"
    listed = (await client.get("/v1/models")).json()["data"]
    assert [(m["id"], m["state"]) for m in listed] == [("slow", "loading")]
    cancelled = await client.post("/v1/models/slow/cancel")
    assert cancelled.status_code == 200 and cancelled.json() is None
    assert "slow" not in client.manager.records


async def test_a_failed_model_describes_with_its_cause(client: Any) -> None:
    client.manager.add("dead", state="error", error="runner exited: killed by SIGKILL")
    response = await client.get("/v1/models/dead")
    assert response.status_code == 200
    assert response.json()["state"] == "error" and "SIGKILL" in response.json()["error"]


async def test_cancelling_a_ready_model_is_refused(client: Any) -> None:
    client.manager.add("m")
    response = await client.post("/v1/models/m/cancel")
    assert response.status_code == 400 and "terminate" in response.json()["detail"]
    assert "m" in client.manager.records


async def test_status_auth_and_version(client: Any) -> None:
    client.manager.add("a")
    client.manager.add("b", state="loading")
    status = (await client.get("/status")).json()
    assert status["status"] == "ok" and status["models"] == {"ready": 1, "loading": 1}
    assert (await client.get("/v1/cluster/auth")).json() == {"auth": False}
    assert "version" in (await client.get("/v1/cluster/version")).json()


async def test_registration_list_get_register_unregister(client: Any) -> None:
    listed = (await client.get("/v1/model_registrations/LLM")).json()
    assert listed == [{"model_name": "toy-chat", "is_builtin": True}]
    detailed = (await client.get("/v1/model_registrations/LLM?detailed=true")).json()
    assert (
        detailed[0]["model_name"] == "toy-chat"
        and detailed[0]["context_length"] == 2048
        and detailed[0]["is_builtin"]
    )
    family = {
        "version": 2, "model_name": "my-llm", "model_lang": ["en"], "model_ability": ["chat"], "context_length": 4096,
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none",
                         "model_id": "org/my-llm", "model_hub": "huggingface"}],
    }  # fmt: skip
    posted = await client.post(
        "/v1/model_registrations/LLM",
        json={"model": json.dumps(family), "persist": True, "worker_ip": None},
    )
    assert (
        posted.status_code == 200
        and posted.json() is None
        and posted.headers["content-type"] == "application/json"
    )
    assert (client.registrations / "LLM" / "my-llm.json").exists()
    one = (await client.get("/v1/model_registrations/LLM/my-llm")).json()
    assert (
        one["model_name"] == "my-llm"
        and one["is_builtin"] is False
        and one["context_length"] == 4096
    )
    assert {"model_name": "my-llm", "is_builtin": False} in (
        await client.get("/v1/model_registrations/LLM")
    ).json()
    removed = await client.delete("/v1/model_registrations/LLM/my-llm")
    assert removed.status_code == 200 and removed.json() is None
    assert not (client.registrations / "LLM" / "my-llm.json").exists()


async def test_registration_errors(client: Any) -> None:
    unknown_type = await client.get("/v1/model_registrations/FOO")
    assert unknown_type.status_code == 400 and "FOO" in unknown_type.json()["detail"]
    unknown = await client.get("/v1/model_registrations/LLM/toy-chta")
    assert unknown.status_code == 404 and "toy-chat" in unknown.json()["detail"]
    not_json = await client.post(
        "/v1/model_registrations/LLM", json={"model": "{", "persist": False}
    )
    assert not_json.status_code == 400
    missing = await client.post("/v1/model_registrations/LLM", json={"persist": False})
    assert missing.status_code == 400 and "model" in missing.json()["detail"]
    builtin = await client.delete("/v1/model_registrations/LLM/toy-chat")
    assert builtin.status_code == 409


async def test_engine_table_lists_what_runs_and_why_not(client: Any) -> None:
    for path in ("/v1/engines/toy-chat", "/v1/engines/LLM/toy-chat"):
        table = (await client.get(path)).json()
        assert table["fake-gguf"] == [
            {
                "model_name": "toy-chat",
                "model_format": "ggufv2",
                "model_size_in_billions": "0_135",
                "quantizations": ["Q4_1"],
            }
        ]
        assert "CUDA" in table["fake-gpu"]
    unknown = await client.get("/v1/engines/toy-chta")
    assert unknown.status_code == 404 and "toy-chat" in unknown.json()["detail"]
    wrong_type = await client.get("/v1/engines/embedding/toy-chat")
    assert wrong_type.status_code == 404 and "LLM" in wrong_type.json()["detail"]


async def test_a_broken_registration_file_is_listed_and_the_rest_serves(tmp_path: Path) -> None:
    folder = tmp_path / "registrations" / "LLM"
    folder.mkdir(parents=True)
    (folder / "broken-one.json").write_bytes(b'{"model_name": ')
    app, _ = S.app_with()
    app.state.catalog = Catalog(
        [S.LLM, S.EMBED, S.RERANK], registrations_dir=tmp_path / "registrations"
    )
    async with S.asgi_client(app) as http:
        listed = (await http.get("/v1/model_registrations/LLM")).json()
        assert {"model_name": "toy-chat", "is_builtin": True} in listed
        [broken] = [item for item in listed if item.get("broken")]
        assert broken["model_name"] == "broken-one" and "not valid JSON" in broken["error"]
        described = await http.get("/v1/model_registrations/LLM/broken-one")
        assert described.status_code == 404 and "is broken" in described.json()["detail"]
        assert (await http.get("/v1/model_registrations/LLM/toy-chat")).status_code == 200
        assert (await http.delete("/v1/model_registrations/LLM/broken-one")).status_code == 200
        assert not (folder / "broken-one.json").exists()
        listed = (await http.get("/v1/model_registrations/LLM")).json()
        assert not [item for item in listed if item.get("broken")]


async def test_model_logs_tail_and_bad_line_counts(client: Any) -> None:
    client.manager.add("m")
    tail = (await client.get("/v1/models/m/logs", params={"lines": 3})).json()
    assert tail == {"uid": "m", "lines": ["m: line 28", "m: line 29", "m: line 30"]}
    assert len((await client.get("/v1/models/m/logs")).json()["lines"]) == 30
    for bad in ("0", "abc", "201"):
        refused = await client.get("/v1/models/m/logs", params={"lines": bad})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "lines", bad
    assert (await client.get("/v1/models/nope/logs")).status_code == 404


async def test_memory_estimate_route_answers_as_cal_model_mem(client: Any) -> None:
    answer = await client.get(
        "/v1/cal_model_mem/toy-chat", params={"context_length": 4096, "parallel": 2}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["engine"], body["quantization"]) == (
        "toy-chat",
        "fake-gguf",
        "Q4_1",
    )
    assert body["total"] == body["weights"] + body["kv_cache"] + body["overhead"] > 0
    assert body["context_length"] == 4096 and body["parallel"] == 2
    bigger = (await client.get("/v1/cal_model_mem/toy-chat?context_length=8192&parallel=2")).json()
    assert bigger["kv_cache"] > body["kv_cache"]
    bad = await client.get("/v1/cal_model_mem/toy-chat", params={"context_length": "-1"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "context_length"
    unknown = await client.get("/v1/cal_model_mem/toy-chta")
    assert unknown.status_code == 404 and "toy-chat" in unknown.json()["detail"]
    no_spec = await client.get("/v1/cal_model_mem/toy-chat", params={"model_format": "awq"})
    assert no_spec.status_code in (400, 404) and "ggufv2" in no_spec.json()["detail"]


async def test_described_models_carry_memory_and_replicas(client: Any) -> None:
    client.manager.add("m", memory_estimate=123_456_789)
    described = (await client.get("/v1/models/m")).json()
    assert described["memory_estimate"] == 123_456_789 and described["replica"] == 1
    # The runner's resident memory, read from /proc where the pid lives (None elsewhere).
    assert "resident_memory_bytes" in described
