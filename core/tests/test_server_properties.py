"""Whatever a client sends, the server answers with a status below 500 and, for errors, the JSON
error body. Hypothesis throws random JSON values, random bytes, and structurally plausible bodies
(right keys, values of any type) at every route."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import httpx
import server_support as S
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from modelyard.catalog import Catalog
from starlette.testclient import TestClient

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
models = st.sampled_from(["m", "emb", "rr", "loading", "dead", "ghost", ""]) | json_values
roles = (
    st.sampled_from(["system", "user", "assistant", "tool", "developer", "wizard"]) | json_values
)
content_parts = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image_url", "input_audio", "video"]) | json_values},
    optional={
        "text": json_values,
        "image_url": st.fixed_dictionaries({"url": st.text()}) | json_values,
    },
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles},
        optional={
            "content": st.text(max_size=20) | st.lists(content_parts, max_size=2) | json_values,
            "tool_calls": json_values,
        },
    ),
    max_size=3,
)
sampling = {
    "temperature": st.floats() | json_values,
    "top_p": st.floats() | json_values,
    "n": st.integers(-2, 20) | json_values,
    "max_tokens": st.integers(-5, 10**6) | json_values,
    "stream": st.booleans() | json_values,
    "stream_options": st.fixed_dictionaries(
        {}, optional={"include_usage": st.booleans() | json_values}
    )
    | json_values,
    "stop": st.text() | st.lists(st.text(), max_size=20) | json_values,
    "logit_bias": st.dictionaries(st.text(max_size=4), st.floats()) | json_values,
    "top_k": st.integers(-3, 100) | json_values,
    "extra_key": json_values,
}
chat_bodies = st.fixed_dictionaries(
    {"model": models},
    optional={
        "messages": messages | json_values,
        "tools": st.lists(
            st.fixed_dictionaries({"type": st.just("function"), "function": json_values}),
            max_size=2,
        )
        | json_values,
        "tool_choice": json_values,
        "response_format": st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema", "yaml"])}
        )
        | json_values,
        **sampling,
    },
)
completion_bodies = st.fixed_dictionaries(
    {"model": models},
    optional={
        "prompt": st.text() | st.lists(st.text() | st.integers(), max_size=3) | json_values,
        **sampling,
    },
)
embedding_bodies = st.fixed_dictionaries(
    {"model": models},
    optional={
        "input": st.text()
        | st.lists(st.text() | st.integers() | st.lists(st.integers()), max_size=3)
        | json_values,
        "encoding_format": st.sampled_from(["float", "base64", "hex"]) | json_values,
    },
)
rerank_bodies = st.fixed_dictionaries(
    {"model": models},
    optional={
        "query": st.text() | json_values,
        "documents": st.lists(st.text() | st.fixed_dictionaries({"text": st.text()}), max_size=3)
        | json_values,
        "top_n": st.integers(-2, 5) | json_values,
        "return_documents": st.booleans() | json_values,
        "return_len": st.booleans() | json_values,
        "kwargs": st.just("{}") | json_values,
    },
)
# Bodies that are valid apart from (maybe) the model, so that the engine paths are exercised too.
valid_sampling = {
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "n": st.integers(1, 3),
    "max_tokens": st.integers(1, 100),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "stop": st.lists(st.text(max_size=4), max_size=3),
}
valid_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant"]), "content": st.text(max_size=20)}
    ),
    min_size=1,
    max_size=3,
)
models_mostly_known = st.sampled_from(["m", "m", "m", "emb", "rr", "loading", "dead", "ghost"])
valid_chat = st.fixed_dictionaries(
    {"model": models_mostly_known, "messages": valid_messages}, optional=valid_sampling
)
valid_completion = st.fixed_dictionaries(
    {
        "model": models_mostly_known,
        "prompt": st.text() | st.lists(st.text(), min_size=1, max_size=3),
    },
    optional=valid_sampling,
)
valid_embedding = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["emb", "emb", "m", "ghost"]),
        "input": st.text() | st.lists(st.text(), min_size=1, max_size=3),
    },
    optional={"encoding_format": st.sampled_from(["float", "base64"])},
)
valid_rerank = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["rr", "rr", "m", "ghost"]),
        "query": st.text(),
        "documents": st.lists(st.text(), min_size=1, max_size=4),
    },
    optional={
        "top_n": st.integers(1, 5) | st.none(),
        "return_documents": st.booleans() | st.none(),
        "return_len": st.booleans() | st.none(),
    },
)
launch_keys = [
    "model_uid", "model_type", "model_engine", "model_size_in_billions", "model_format", "quantization", "replica",
    "n_worker", "n_gpu", "peft_model_config", "worker_ip", "gpu_idx", "envs", "n_ctx", "sampling.top_k",
]  # fmt: skip
launch_bodies = st.fixed_dictionaries(
    {"model_name": st.sampled_from(["toy-chat", "toy-embed", "nope"]) | json_values},
    optional={
        key: json_values | st.sampled_from(["LLM", "embedding", "0_135", "auto", "ggufv2", "x y"])
        for key in launch_keys
    },
)
registration_bodies = st.fixed_dictionaries(
    {"model": st.text(max_size=30) | json_values.map(json.dumps) | json_values},
    optional={"persist": st.booleans() | json_values, "worker_ip": json_values},
)
raw_bodies = st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())

POSTS = {
    "/v1/chat/completions": valid_chat | chat_bodies,
    "/v1/completions": valid_completion | completion_bodies,
    "/v1/embeddings": valid_embedding | embedding_bodies,
    "/v1/rerank": valid_rerank | rerank_bodies,
    "/v1/models": launch_bodies,
    "/v1/model_registrations/LLM": registration_bodies,
}
names = st.sampled_from(
    ["m", "emb", "loading", "dead", "ghost", "toy-chat", "LLM", "%20", "..", "a.b", "%E2%9C%93"]
)
GET_PATHS = [
    "/v1/models", "/v1/models/{}", "/v1/models/{}/progress", "/v1/model_registrations/{}",
    "/v1/model_registrations/LLM/{}", "/v1/engines/{}", "/v1/engines/{}/{}", "/status", "/metrics", "/{}",
]  # fmt: skip


def make_client() -> TestClient:
    app, manager = S.app_with()
    manager.add("m")
    manager.add("emb", model_type="embedding")
    manager.add("rr", model_type="rerank")
    manager.add("loading", state="loading")
    manager.add("dead", state="error", error="killed")
    app.state.catalog = Catalog(
        [S.LLM, S.EMBED, S.RERANK], registrations_dir=Path(tempfile.mkdtemp()) / "registrations"
    )
    return TestClient(app, base_url="http://localhost")


def check(response: httpx.Response) -> None:
    assert response.status_code < 500 or response.status_code == 503, (
        response.status_code,
        response.text,
    )
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/json", response.headers
        body = response.json()
        assert body["error"]["message"] == body["detail"] and body["detail"]
        assert isinstance(body["error"]["type"], str)
    elif response.headers["content-type"] == "application/json":
        response.json()


CLIENT = make_client()


@SETTINGS
@given(path=st.sampled_from(sorted(POSTS)), data=st.data())
def test_plausible_bodies_never_crash(path: str, data: st.DataObject) -> None:
    body = data.draw(POSTS[path])
    check(
        CLIENT.post(
            path, content=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
    )


@SETTINGS
@given(path=st.sampled_from([*sorted(POSTS), "/v1/models/m/cancel"]), body=raw_bodies)
def test_random_bytes_and_json_values_never_crash(path: str, body: bytes) -> None:
    check(CLIENT.post(path, content=body))


@SETTINGS
@given(
    template=st.sampled_from(GET_PATHS),
    first=names,
    second=names,
    method=st.sampled_from(["GET", "DELETE", "PUT"]),
)
def test_any_path_and_method_never_crash(
    template: str, first: str, second: str, method: str
) -> None:
    path = template.format(first, second)
    if method == "DELETE" and path.startswith("/v1/models/") and first in ("m", "emb"):
        return  # keep the models the other examples use
    check(CLIENT.request(method, path))
