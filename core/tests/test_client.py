"""modelyard.client against a stub server over real HTTP: request shapes, handles, SSE, errors."""

from __future__ import annotations

import importlib.util
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from modelyard.client import (
    ChatModelHandle,
    Client,
    EmbeddingModelHandle,
    GenerateModelHandle,
    RerankModelHandle,
    error_from_body,
)
from modelyard.errors import (
    Conflict,
    ContextLengthExceeded,
    EngineError,
    InvalidRequest,
    LaunchError,
    ModelNotFound,
    ModelyardError,
    Overloaded,
    Unavailable,
)


def load_stub() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "modelyard_test_stub", Path(__file__).with_name("test_client_stub.py")
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stub_module = load_stub()


@pytest.fixture
def stub() -> Iterator[object]:
    yield stub_module.Stub()


@pytest.fixture
def client(stub: object) -> Iterator[Client]:
    with stub_module.serving(stub) as url, Client(url + "/") as client:
        yield client


def test_launch_sends_xinference_payload_with_engine_params(client: Client, stub: object) -> None:
    uid = client.launch_model(
        "smollm2-instruct",
        model_engine="llama.cpp",
        model_format="ggufv2",
        model_size_in_billions=0.135,
        quantization="Q4_1",
        model_uid="s1",
        n_ctx=2048,
        **{"sampling.top_k": 20},
    )
    assert uid == "s1"
    body, query = stub.last("/v1/models")
    assert body == {
        "model_uid": "s1",
        "model_name": "smollm2-instruct",
        "model_type": "LLM",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": 0.135,
        "quantization": "Q4_1",
        "n_ctx": 2048,
        "sampling.top_k": 20,
    }
    assert query == {}  # wait_ready is only sent when false, as xinference-client does


def test_launch_whole_size_is_an_int_and_no_wait_is_a_query(client: Client, stub: object) -> None:
    client.launch_model("qwen3", model_size_in_billions=8.0, wait_ready=False)
    body, query = stub.last("/v1/models")
    assert body["model_size_in_billions"] == 8 and isinstance(body["model_size_in_billions"], int)
    assert query == {"wait_ready": "false"}


def test_list_describe_terminate(client: Client) -> None:
    client.launch_model("a")
    client.launch_model("b", model_type="embedding", model_uid="emb")
    models = client.list_models()
    assert sorted(models) == ["a", "emb"]
    assert models["emb"]["model_type"] == "embedding"
    assert client.describe_model("a")["model_name"] == "a"
    client.terminate_model("a")
    assert list(client.list_models()) == ["emb"]
    with pytest.raises(ModelNotFound) as info:
        client.terminate_model("a")
    assert info.value.status == 404 and "'a' is not running" in info.value.message


def test_get_model_picks_the_handle_by_type_and_ability(client: Client) -> None:
    client.launch_model("chat-model")
    client.launch_model("base-only")
    client.launch_model("e", model_type="embedding")
    client.launch_model("r", model_type="rerank")
    assert type(client.get_model("chat-model")) is ChatModelHandle
    assert type(client.get_model("base-only")) is GenerateModelHandle
    assert type(client.get_model("e")) is EmbeddingModelHandle
    assert type(client.get_model("r")) is RerankModelHandle


def test_chat_plain_and_streaming(client: Client, stub: object) -> None:
    client.launch_model("m")
    model = client.get_model("m")
    assert isinstance(model, ChatModelHandle)
    history = [{"role": "user", "content": "hi"}]
    result = model.chat(history, max_tokens=5, generate_config={"temperature": 0})
    assert isinstance(result, dict)
    assert result["choices"][0]["message"]["content"] == "reply 1 to hi"
    body, _ = stub.last("/v1/chat/completions")
    assert body == {
        "model": "m",
        "messages": history,
        "max_tokens": 5,
        "temperature": 0,
        "stream": False,
    }

    chunks = list(model.chat(history, stream=True))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "reply 1 to hi"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def test_generate_streaming_and_not(client: Client) -> None:
    client.launch_model("m")
    model = client.get_model("m")
    assert isinstance(model, GenerateModelHandle)
    assert model.generate("once")["choices"][0]["text"] == " and so on"  # type: ignore[index]
    pieces = [c["choices"][0]["text"] for c in model.generate("once", stream=True)]
    assert pieces == [" and", " so", " on"]


def test_error_chunk_mid_stream_raises_with_its_message(client: Client) -> None:
    client.launch_model("m")
    model = client.get_model("m")
    stream = model.chat([{"role": "user", "content": "boom"}], stream=True)  # type: ignore[union-attr]
    first = next(stream)  # type: ignore[arg-type]
    assert first["choices"][0]["delta"]["role"] == "assistant"
    with pytest.raises(EngineError, match="ran out of memory") as info:
        list(stream)  # type: ignore[arg-type]
    assert info.value.status == 500


def test_embedding_and_rerank(client: Client, stub: object) -> None:
    client.launch_model("e", model_type="embedding")
    client.launch_model("r", model_type="rerank")
    emb = client.get_model("e")
    assert isinstance(emb, EmbeddingModelHandle)
    data = emb.create_embedding(["ab", "abcd"])["data"]
    assert [d["embedding"][0] for d in data] == [2.0, 4.0]

    rr = client.get_model("r")
    assert isinstance(rr, RerankModelHandle)
    docs = ["a cat", "the red fox jumps", "red fox"]
    result = rr.rerank(docs, "red fox", top_n=2, return_documents=True)
    assert [r["index"] for r in result["results"]] == [1, 2]
    assert result["results"][0]["document"] == {"text": "the red fox jumps"}
    body, _ = stub.last("/v1/rerank")
    assert body == {
        "model": "r",
        "documents": docs,
        "query": "red fox",
        "top_n": 2,
        "return_documents": True,
    }
    rr.rerank(docs, "red fox")
    body, _ = stub.last("/v1/rerank")
    assert (
        "top_n" not in body and "return_documents" not in body
    )  # unset means the server's default


def test_registrations_and_engines(client: Client, stub: object) -> None:
    family = {"model_name": "my-llm", "model_ability": ["chat"]}
    client.register_model("LLM", family, persist=False)
    body, _ = stub.last("/v1/model_registrations/LLM")
    assert (
        isinstance(body["model"], str) and json.loads(body["model"]) == family
    )  # Xinference sends text
    assert body["persist"] is False
    names = {r["model_name"]: r["is_builtin"] for r in client.list_model_registrations("LLM")}
    assert names == {"builtin-llm": True, "my-llm": False}
    assert client.get_model_registration("LLM", "my-llm")["model_ability"] == ["chat"]
    client.unregister_model("LLM", "my-llm")
    with pytest.raises(ModelNotFound):
        client.get_model_registration("LLM", "my-llm")
    engines = client.query_engine_by_model_name("smollm2-instruct")
    assert engines["vLLM"] == "no CUDA device"
    assert stub.requests[-1][1] == "/v1/engines/LLM/smollm2-instruct"


def test_server_errors_become_modelyard_errors(client: Client) -> None:
    client.launch_model("m")
    with pytest.raises(Conflict) as conflict:
        client.launch_model("m")
    assert conflict.value.status == 409 and "already in use" in str(conflict.value)
    with pytest.raises(LaunchError, match="not in the catalog") as launch:
        client.launch_model("nope")
    assert launch.value.code == "launch_failed"
    with pytest.raises(ModelyardError) as teapot:
        client._json("GET", "/teapot")
    assert teapot.value.status == 418 and teapot.value.message == "short and stout"


def test_unreachable_server_is_unavailable_with_a_hint() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}") as client, pytest.raises(Unavailable) as info:
        client.list_models()
    assert f"127.0.0.1:{port}" in info.value.message and "modelyard serve" in info.value.message


def test_endpoint_and_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_ENDPOINT", "http://example.invalid:1234/")
    with Client(api_key="sekrit") as client:
        assert client.endpoint == "http://example.invalid:1234"
        assert client._http.headers["Authorization"] == "Bearer sekrit"
    monkeypatch.delenv("MODELYARD_ENDPOINT")
    with Client() as client:
        assert client.endpoint == "http://127.0.0.1:9997"
        assert "Authorization" not in client._http.headers


@pytest.mark.parametrize(
    ("status", "body", "expected", "message"),
    [
        (
            404,
            {"error": {"message": "m1", "code": "model_not_found"}, "detail": "m1"},
            ModelNotFound,
            "m1",
        ),
        (
            400,
            {"error": {"message": "too long", "code": "context_length_exceeded"}},
            ContextLengthExceeded,
            "too long",
        ),
        (429, {"error": {"message": "busy", "type": "rate_limit_error"}}, Overloaded, "busy"),
        (400, {"detail": "xinference style"}, InvalidRequest, "xinference style"),
        (400, {"detail": [{"loc": ["x"]}]}, InvalidRequest, '[{"loc": ["x"]}]'),
        (
            422,
            {"error": {"message": "bad", "type": "invalid_request_error"}},
            InvalidRequest,
            "bad",
        ),
        (500, {"error": "plain string"}, ModelyardError, "plain string"),
        (500, {"error": {"message": "oom", "type": "engine_error"}}, EngineError, "oom"),
        (503, {"error": {"message": "dead", "type": "service_unavailable"}}, Unavailable, "dead"),
        (502, None, ModelyardError, "Bad Gateway"),
    ],
)
def test_error_from_body(status: int, body: object, expected: type, message: str) -> None:
    err = error_from_body(status, body, "Bad Gateway")
    assert type(err) is expected
    assert err.message == message
    assert err.status == status


def test_a_timeout_is_unavailable_and_says_so(client: Client, stub: object) -> None:
    import anyio

    async def slow(request: object) -> object:
        await anyio.sleep(1)
        raise AssertionError("the client should have given up")

    stub.list_models = slow  # type: ignore[attr-defined]
    expected = pytest.raises(Unavailable, match="did not answer GET /v1/models in time")
    with stub_module.serving(stub) as url, Client(url, timeout=0.1) as impatient, expected:
        impatient.list_models()
