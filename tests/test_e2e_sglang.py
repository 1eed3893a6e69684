"""modelyard serve → SGLang, end to end: a real server process from this environment, a runner
started with the interpreter of SGLang's own environment (its CPU engine here), and the openai
client. SmolLM2-135M-Instruct as float32 safetensors and all-MiniLM-L6-v2 (scripts/prepare_models.py).

Needs SGLang's interpreter in MODELYARD_TEST_SGLANG_PYTHON: the SGLang CI step
(plugins/engine-sglang/scripts/test.sh) builds the environment and runs this module. One engine
start serves the whole module (~45 s on a 2-core machine).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import httpx
import jsonschema
import openai
import pytest
from local_families import smollm2_family

if TYPE_CHECKING:
    from conftest import Server
    from openai.types.chat import ChatCompletion

SGLANG_PYTHON = os.environ.get("MODELYARD_TEST_SGLANG_PYTHON")
MODELS = Path(os.environ.get("MODELYARD_TEST_MODELS", Path(__file__).parents[1] / ".models"))
SMOLLM2 = MODELS / "smollm2-135m-instruct"
MINILM = MODELS / "all-minilm-l6-v2"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.skipif(
        not SGLANG_PYTHON,
        reason="needs MODELYARD_TEST_SGLANG_PYTHON, an SGLang environment's interpreter "
        "(plugins/engine-sglang/scripts/test.sh builds one)",
    ),
]
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]


def _register(server: Server, family: dict[str, object], model_type: str = "LLM") -> None:
    with server.client() as http:
        registered = http.post(
            f"/v1/model_registrations/{model_type}",
            json={"model": json.dumps(family), "persist": False},
        )
    assert registered.status_code == 200, registered.text


def _embedding_family(name: str, folder: Path) -> dict[str, object]:
    return {
        "model_name": name,
        "model_type": "embedding",
        "dimensions": 384,
        "max_tokens": 256,
        "architectures": ["BertModel"],
        "model_specs": [
            {
                "model_format": "pytorch",
                "model_size_in_billions": 0.022,
                "quantizations": ["none"],
                "sources": [{"hub": "local", "model_id": str(folder)}],
            }
        ],
    }


@pytest.fixture(scope="module")
def broken_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model root for the test of weights SGLang cannot read."""
    return tmp_path_factory.mktemp("broken-models")


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    serving: Callable[..., AbstractContextManager[Server]],
    broken_root: Path,
) -> Iterator[Server]:
    if not (SMOLLM2 / "config.json").is_file():
        pytest.skip(f"{SMOLLM2} is missing; build it with `python scripts/prepare_models.py`")
    assert SGLANG_PYTHON is not None
    home = tmp_path_factory.mktemp("sglang-home")
    modelyard = str(Path(sys.executable).with_name("modelyard"))
    used = subprocess.run(
        [modelyard, "env", "use", "SGLang", SGLANG_PYTHON],
        env={**os.environ, "MODELYARD_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert used.returncode == 0, used.stderr
    roots = ("--model-root", str(MODELS), "--model-root", str(broken_root))
    with serving(home, *roots) as running:
        _register(running, smollm2_family("local-smollm2-sglang", SMOLLM2, tools=True))
        yield running


@pytest.fixture(scope="module")
def uid(server: Server) -> Iterator[str]:
    with server.client() as http:
        engines = http.get("/v1/engines/local-smollm2-sglang").json()
    assert isinstance(engines["SGLang"], list), engines
    launched = server.launch(
        timeout=900,
        model_name="local-smollm2-sglang",
        model_engine="SGLang",
        model_uid="smol-sglang",
        context_length=2048,
    )
    record = server.describe(launched).json()
    assert record["model_engine"] == "SGLang", record
    assert Path(f"/proc/{record['pid']}/cmdline").read_bytes().split(b"\0")[0].decode() == (
        SGLANG_PYTHON
    )
    try:
        yield launched
    finally:
        server.terminate(launched)


@pytest.fixture(scope="module")
def oai(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300
    ) as client:
        yield client


def ask_for_the_capital(oai: openai.OpenAI, uid: str) -> ChatCompletion:
    return oai.chat.completions.create(
        model=uid,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=12,
        temperature=0,
    )


def test_chat_with_a_system_prompt_answers_paris(oai: openai.OpenAI, uid: str) -> None:
    reply = ask_for_the_capital(oai, uid)
    assert "Paris" in (reply.choices[0].message.content or "")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 10 and 0 < reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_the_engine_answers_after_an_idle_spell(oai: openai.OpenAI, uid: str) -> None:
    """SGLang's scheduler dies with the thread that started it (PR_SET_PDEATHSIG): a model loaded in
    one of the runner's worker threads, which end after 10 idle seconds, lost its scheduler there.
    Idle past that, with the idle scheduler asleep (sleep_on_idle, the CPU default), it answers."""
    time.sleep(12)
    reply = ask_for_the_capital(oai, uid)
    assert "Paris" in (reply.choices[0].message.content or "")


def test_streamed_usage_counts_the_streamed_tokens(oai: openai.OpenAI, uid: str) -> None:
    stream = oai.chat.completions.create(
        model=uid,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    chunks = list(stream)
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_two_concurrent_streams_both_complete(server: Server, uid: str) -> None:
    client = openai.AsyncOpenAI(
        base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=600
    )
    countries = ["France", "Germany"]
    texts: dict[int, str] = {}
    finishes: dict[int, str | None] = {}

    async def one(i: int) -> None:
        stream = await client.chat.completions.create(
            model=uid,
            messages=[
                QUESTION[0],  # type: ignore[list-item]
                {"role": "user", "content": f"What is the capital of {countries[i]}?"},
            ],
            max_tokens=12,
            temperature=0,
            stream=True,
        )
        parts = []
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
                finishes[i] = chunk.choices[0].finish_reason or finishes.get(i)
        texts[i] = "".join(parts)

    async def run_all() -> None:
        async with client, anyio.create_task_group() as tg:
            for i in range(2):
                tg.start_soon(one, i)

    anyio.run(run_all)
    assert sorted(texts) == [0, 1] and all(finishes[i] in ("stop", "length") for i in (0, 1))
    assert "Paris" in texts[0] and "Berlin" in texts[1]


def test_a_closed_stream_is_aborted_in_sglang(server: Server, oai: openai.OpenAI, uid: str) -> None:
    request_id = f"leave-{uuid.uuid4().hex[:12]}"
    stream = oai.chat.completions.create(
        model=uid,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=1500,
        stream=True,
        extra_body={"ignore_eos": True, "request_id": request_id},
    )
    for seen, _ in enumerate(stream):
        if seen == 2:
            break
    stream.close()  # the client goes away mid-answer
    # The runner aborts the request in SGLang under the id the client gave, and says so.
    line = f"SGLang aborted request {request_id}"
    deadline = time.monotonic() + 120
    while line not in server.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert line in server.log.read_text()
    # The engine keeps serving.
    reply = ask_for_the_capital(oai, uid)
    assert "Paris" in (reply.choices[0].message.content or "")


def test_no_sglang_listener_is_reachable_from_another_host(server: Server, uid: str) -> None:
    """Every TCP socket the SGLang runner and its scheduler and detokenizer processes listen on
    is on loopback: nothing SGLang opens is reachable around the server."""
    from modelyard.benchmark import process_tree
    from proc_sockets import listening

    pid = server.describe(uid).json()["pid"]
    loopback = ("0100007F", "00000000000000000000000001000000")  # 127.0.0.1, ::1 in /proc
    processes = process_tree(pid)
    assert len(processes) >= 3  # the runner, SGLang's scheduler and detokenizer
    seen = {address for proc in processes for address in listening(proc)[0]}
    assert all(address.split(":")[0] in loopback for address in seen), sorted(seen)


def test_completion(oai: openai.OpenAI, uid: str) -> None:
    reply = oai.completions.create(
        model=uid, prompt="The capital of France is", max_tokens=6, temperature=0
    )
    assert "Paris" in reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_json_schema_response_format_holds_the_output(oai: openai.OpenAI, uid: str) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"],
        "additionalProperties": False,
    }
    reply = oai.chat.completions.create(
        model=uid,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=40,
        temperature=0,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema},
        },
    )
    jsonschema.validate(json.loads(reply.choices[0].message.content or ""), schema)


# strict: SGLang's grammar holds a forced call's arguments to the parameters only for strict
# functions (OpenAI's rule); without it the arguments are any JSON object.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
# SGLang's structural tag forces the call and, as in SGLang's own server, leaves the text after it
# free: SmolLM2 (not trained for tools) writes on after the call until max_tokens ("length").
FORCED_FINISHES = ("tool_calls", "length")


def test_required_tool_choice_returns_a_parsed_call(oai: openai.OpenAI, uid: str) -> None:
    """SGLang's hermes detector: its structural tag forces a <tool_call> block, its parser reads it."""
    reply = oai.chat.completions.create(
        model=uid,
        messages=WEATHER_QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        tool_choice="required",
        max_tokens=40,
        temperature=0,
    )
    calls = reply.choices[0].message.tool_calls or []
    assert reply.choices[0].finish_reason in FORCED_FINISHES and len(calls) == 1
    assert calls[0].function.name == "get_weather"  # type: ignore[union-attr]
    arguments = json.loads(calls[0].function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[index]
    assert "<tool_call>" not in (reply.choices[0].message.content or "")


def test_a_named_tool_call_streams_as_tool_call_deltas(oai: openai.OpenAI, uid: str) -> None:
    stream = oai.chat.completions.create(
        model=uid,
        messages=WEATHER_QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER, {"type": "function", "function": {"name": "get_time"}}],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=40,
        temperature=0,
        stream=True,
    )
    names, arguments, ids, finish = [], "", [], None
    for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            assert call.index == 0
            ids += [call.id] if call.id else []
            names += [call.function.name] if call.function and call.function.name else []
            arguments += (call.function.arguments or "") if call.function else ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert names == ["get_weather"] and len(ids) == 1 and finish in FORCED_FINISHES
    jsonschema.validate(json.loads(arguments), WEATHER["function"]["parameters"])  # type: ignore[index]


def test_with_tool_choice_auto_the_small_model_answers_in_text(
    oai: openai.OpenAI, uid: str
) -> None:
    """SmolLM2's chat template does not show tools to the model, so it answers in words: SGLang's
    parser passes text without a call through as content."""
    reply = oai.chat.completions.create(
        model=uid,
        messages=QUESTION,  # type: ignore[arg-type]
        tools=[WEATHER],  # type: ignore[list-item]
        max_tokens=12,
        temperature=0,
    )
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert "Paris" in (reply.choices[0].message.content or "")


def test_a_prompt_beyond_the_context_is_a_400(oai: openai.OpenAI, uid: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model=uid,
            messages=[{"role": "user", "content": "Paris " * 3000}],
            max_tokens=4,
        )
    assert "context" in str(info.value)


def test_an_unknown_engine_argument_is_a_400_with_close_matches(server: Server) -> None:
    with server.client(timeout=300) as http:
        response = http.post(
            "/v1/models",
            json={
                "model_name": "local-smollm2-sglang",
                "model_engine": "SGLang",
                "model_uid": "smol-typo",
                "max_total_tokns": 4096,
            },
        )
        assert response.status_code == 400, response.text
        assert "'max_total_tokens'" in response.json()["error"]["message"]
        assert http.get("/v1/models/smol-typo").status_code == 404


def test_a_model_sglang_cannot_load_fails_with_sglang_s_reason(
    server: Server, broken_root: Path
) -> None:
    """Weights SGLang cannot read: the launch error carries what SGLang's scheduler said."""
    folder = broken_root / "smollm2-broken"
    folder.mkdir()
    for item in SMOLLM2.iterdir():
        if item.suffix != ".safetensors":
            shutil.copy(item, folder / item.name)
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00not json")
    _register(server, smollm2_family("local-smollm2-broken", folder, tools=True))
    with server.client(timeout=900) as http:
        response = http.post(
            "/v1/models",
            json={
                "model_name": "local-smollm2-broken",
                "model_engine": "SGLang",
                "model_uid": "smol-broken",
                "context_length": 2048,
            },
        )
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "SGLang failed to start local-smollm2-broken" in message, message
    assert "SafetensorError" in message, message
    with server.client() as http:
        assert http.get("/v1/models/smol-broken").status_code == 404


def _launch_embedding(server: Server, name: str, uid: str) -> httpx.Response:
    with server.client(timeout=900) as http:
        return http.post(
            "/v1/models",
            json={
                "model_name": name,
                "model_type": "embedding",
                "model_engine": "SGLang",
                "model_uid": uid,
            },
        )


def test_a_mean_pooled_embedding_model_is_refused_with_both_poolings(server: Server) -> None:
    """all-MiniLM-L6-v2 pools the mean of its tokens; SGLang's BertModel pools the CLS token: its
    vectors would not be the model's embeddings, so the launch says so instead of serving them."""
    if not (MINILM / "modules.json").is_file():
        pytest.skip(f"{MINILM} is missing; build it with `python scripts/prepare_models.py`")
    _register(server, _embedding_family("local-minilm-sglang", MINILM), "embedding")
    response = _launch_embedding(server, "local-minilm-sglang", "minilm-sglang")
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "the CLS token" in message and "the mean over the tokens" in message, message
    with server.client() as http:
        assert http.get("/v1/models/minilm-sglang").status_code == 404


def test_a_cls_pooled_bert_embeds_on_sglangs_cpu_engine(
    server: Server, oai: openai.OpenAI, broken_root: Path
) -> None:
    """The same BERT weights with a sentence-transformers config that pools the CLS token, as
    SGLang's BertModel does: SGLang's embeddings equal sentence-transformers' for that model."""
    if not (MINILM / "modules.json").is_file():
        pytest.skip(f"{MINILM} is missing; build it with `python scripts/prepare_models.py`")
    folder = broken_root / "minilm-cls"
    shutil.copytree(MINILM, folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    pooling.write_text(json.dumps(config))
    _register(server, _embedding_family("local-minilm-cls-sglang", folder), "embedding")
    launched = _launch_embedding(server, "local-minilm-cls-sglang", "minilm-cls-sglang")
    assert launched.status_code == 200, launched.text
    try:
        texts = ["The capital of France is Paris.", "hello"]
        reply = oai.embeddings.create(model="minilm-cls-sglang", input=texts)
        assert [len(d.embedding) for d in reply.data] == [384, 384]
        assert reply.usage.prompt_tokens > 4
        from sentence_transformers import SentenceTransformer

        expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
        for got, want in zip(reply.data, expected, strict=True):
            assert max(abs(a - float(b)) for a, b in zip(got.embedding, want, strict=True)) < 1e-4
    finally:
        server.terminate("minilm-cls-sglang")
