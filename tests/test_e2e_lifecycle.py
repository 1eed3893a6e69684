"""Launch, isolation and termination through a real server: runners are real processes."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import openai
import pytest
from xinference_client import RESTfulClient

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _wait_for(predicate, what: str, attempts: int = 100) -> None:
    """Poll (0.1 s apart) until predicate() holds; a bound on polling, not a speed assertion."""
    for _ in range(attempts):
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"gave up waiting for {what}")


@pytest.fixture
def xinference(server: Server) -> Iterator[RESTfulClient]:
    client = RESTfulClient(server.url)
    yield client
    client.close()  # its requests.Session keeps sockets open until closed


def test_xinference_client_launch_list_chat_terminate(
    xinference: RESTfulClient, smollm2_gguf: dict[str, str]
) -> None:
    client = xinference
    uid = client.launch_model(
        model_name="smollm2-instruct",
        model_engine="llama.cpp",
        model_format="ggufv2",
        model_size_in_billions="0_135",
        quantization="Q4_1",
        model_uid="xsmol",
        n_ctx=1024,
    )
    assert uid == "xsmol"
    assert "xsmol" in client.list_models()
    (worker,) = client.get_workers_info()  # not on a cluster: this machine is the one worker
    assert worker["work-ip"] == "127.0.0.1" and worker["resources"]["CPU"] >= 1
    assert worker["models"]["xsmol"]["model_engine"] == "llama.cpp"
    with pytest.raises(RuntimeError, match="serve --cluster"):
        client.launch_model(model_name="smollm2-instruct", worker_ip="10.1.2.3")
    model = client.get_model("xsmol")
    reply = model.chat(
        messages=[{"role": "user", "content": "Say hello."}],
        generate_config={"max_tokens": 8, "temperature": 0},
    )
    assert reply["choices"][0]["message"]["content"]
    assert reply["usage"]["completion_tokens"] > 0
    chunks = list(
        model.chat(
            messages=[{"role": "user", "content": "Hi"}],
            generate_config={"max_tokens": 4, "stream": True},
        )
    )
    assert any(chunk["choices"] and chunk["choices"][0]["delta"].get("content") for chunk in chunks)
    client.terminate_model("xsmol")
    assert "xsmol" not in client.list_models()


def test_terminate_ends_the_runner_and_frees_its_memory(
    server: Server, smollm2_gguf: dict[str, str]
) -> None:
    uid = server.launch(model_uid="short-lived", **smollm2_gguf)
    pid = server.describe(uid).json()["pid"]
    assert _rss_kib(pid) > 50_000  # the weights are resident: ~100 MB of GGUF
    server.terminate(uid)
    assert not Path(f"/proc/{pid}").exists()
    assert server.describe(uid).status_code == 404


def test_a_killed_runner_is_noticed_and_the_others_keep_serving(
    server: Server, smollm2_gguf: dict[str, str], request: pytest.FixtureRequest
) -> None:
    survivor = server.launch(model_uid="survivor", **smollm2_gguf)
    victim = server.launch(model_uid="victim", n_parallel=1, **smollm2_gguf)
    pid = server.describe(victim).json()["pid"]
    oai = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    request.addfinalizer(oai.close)

    outcome: dict[str, object] = {}

    def stream_from_victim() -> None:
        try:
            # `with`: the stream ends in an error, and its connection must still be closed.
            with oai.chat.completions.create(
                model=victim,
                messages=[{"role": "user", "content": "Tell me a very long story."}],
                max_tokens=2000,
                extra_body={"ignore_eos": True},
                stream=True,
            ) as stream:
                for chunk in stream:
                    outcome.setdefault("first_chunk", chunk)
            outcome["ended"] = "normally"
        except Exception as exc:  # the in-flight request must fail, not hang
            outcome["ended"] = exc

    reader = threading.Thread(target=stream_from_victim)
    reader.start()
    _wait_for(lambda: "first_chunk" in outcome, "the victim's first chunk", attempts=300)
    os.kill(pid, signal.SIGKILL)
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert isinstance(outcome["ended"], Exception), outcome["ended"]

    def victim_failed() -> bool:
        described = server.describe(victim)
        return described.status_code != 200 or described.json().get("state") == "error"

    _wait_for(victim_failed, "the dead runner to be noticed", attempts=50)
    described = server.describe(victim)
    assert "SIGKILL" in described.text

    with pytest.raises(openai.APIStatusError) as caught:
        oai.chat.completions.create(
            model=victim, messages=[{"role": "user", "content": "hi"}], max_tokens=2
        )
    assert caught.value.status_code == 503

    reply = oai.chat.completions.create(
        model=survivor, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.usage.completion_tokens > 0

    relaunched = server.launch(model_uid="victim", **smollm2_gguf)
    assert relaunched == "victim"
    reply = oai.chat.completions.create(
        model=victim, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert reply.usage.completion_tokens > 0
    server.terminate(victim)
    server.terminate(survivor)


def test_failed_launch_explains_itself_and_leaves_nothing(
    server: Server, smollm2_gguf: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        unknown = http.post("/v1/models", json={"model_name": "smollm2-instrukt"})
        assert unknown.status_code in (400, 404)
        assert "smollm2-instruct" in unknown.json()["detail"]  # close matches are suggested

        bad_param = http.post(
            "/v1/models", json={**smollm2_gguf, "model_uid": "bad", "n_ctxx": 512}
        )
        assert bad_param.status_code == 400
        assert "n_ctx" in bad_param.json()["detail"]

        wrong_engine = http.post(
            "/v1/models", json={**smollm2_gguf, "model_uid": "bad", "model_engine": "Transformers"}
        )
        assert wrong_engine.status_code == 400
        assert "Transformers" in wrong_engine.json()["detail"]

        listed = http.get("/v1/models").json()["data"]
        assert all(item["id"] != "bad" for item in listed)
