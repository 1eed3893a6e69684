"""Bad input for every route, as hypothesis strategies: structurally plausible bodies (right keys,
values of any type), random bytes and JSON values, and hostile values placed anywhere in an
otherwise valid body: deep nesting, integers beyond 64 bits, NaN/Infinity, huge strings, wrong
content and part types, malformed tool calls. Shared by test_server_properties.py and the long
run in bench/bad_input_fuzz.py; it holds no tests.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import httpx
import server_support as S
from hypothesis import strategies as st
from modelyard.catalog import Catalog
from starlette.testclient import TestClient

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**40])
    | st.floats()
    | st.text(max_size=12)
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
        if body.get("type") == "error":  # Anthropic's shape, on /v1/messages
            assert body["error"]["message"] and isinstance(body["error"]["type"], str)
            return
        assert body["error"]["message"] == body["detail"] and body["detail"]
        assert isinstance(body["error"]["type"], str)
    elif response.headers["content-type"] == "application/json":
        response.json()


# --- hostile values, placed anywhere in an otherwise valid body ---
HOLE = "__HOSTILE__"
_IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
_AUDIO = {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
_CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


def _nested(depth: int) -> bytes:
    half = depth // 2
    return b'[{"k": ' * half + b"1" + b"}]" * half + b"[]" * (depth % 2)


hostile_values = st.one_of(
    st.integers(-(2**300), 2**300).map(lambda n: str(n).encode()),
    st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"1e-999", b"-0"]),
    st.integers(1, 3000).map(_nested),
    st.sampled_from([10, 100_000, 2_000_000]).map(lambda n: b'"' + b"x" * n + b'"'),
    st.sampled_from(
        [
            _IMAGE,
            _AUDIO,
            [_IMAGE],
            [_AUDIO],
            [{"type": "video", "video": "x"}],
            [{"type": "text"}],
            [{"text": "no type"}],
            {"type": "text", "text": "not a list"},
            [_CALL],
            [{"function": 3}],
            [{"id": 1, "function": {"name": "f", "arguments": {"a": 1}}}],
            ["get_weather"],
            [{"type": "retrieval", "function": {"name": "f"}}],
            "",
            [],
            {},
            None,
            True,
            -1,
            0.5,
        ]
    ).map(lambda v: json.dumps(v).encode()),
)
_USER = {"role": "user", "content": "hi"}
_ASSISTANT = {"role": "assistant", "content": None, "tool_calls": [_CALL]}
_TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
_SCHEMA = {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}}
TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {"model": HOLE, "messages": [_USER]},
        {"model": "m", "messages": HOLE},
        {"model": "m", "messages": [HOLE]},
        {"model": "m", "messages": [{"role": "user", "content": HOLE}]},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, HOLE]}]},
        {"model": "m", "messages": [{"role": "user", "content": [_IMAGE, HOLE]}]},
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": HOLE}, _USER]},
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": [HOLE]}, _USER]},
        {"model": "m", "messages": [{**_ASSISTANT, "tool_calls": [{**_CALL, "function": HOLE}]}, _USER]},
        {"model": "m", "messages": [_ASSISTANT, {"role": "tool", "tool_call_id": HOLE, "content": "x"}]},
        *({"model": "m", "messages": [_USER], key: HOLE} for key in (
            "seed", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "n", "stop",
            "stop_token_ids", "logit_bias", "tool_choice", "tools", "response_format", "stream",
            "stream_options", "chat_template_kwargs", "logprobs", "top_logprobs", "unknown_extra",
        )),
        {"model": "m", "messages": [_USER], "stop_token_ids": [1, HOLE]},
        {"model": "m", "messages": [_USER], "logit_bias": {"5": HOLE}},
        {"model": "m", "messages": [_USER], "chat_template_kwargs": {"x": HOLE}},
        {"model": "m", "messages": [_USER], "tools": [HOLE]},
        {"model": "m", "messages": [_USER], "tools": [{**_TOOL, "function": {"name": "f", "parameters": {"p": HOLE}}}]},
        {"model": "m", "messages": [_USER], "tool_choice": {"type": "function", "function": {"name": HOLE}}},
        {"model": "m", "messages": [_USER], "response_format": {**_SCHEMA, "json_schema": {"schema": {"x": HOLE}}}},
        {"model": "m", "messages": [_USER], "stream": True, "stream_options": {"include_usage": HOLE}},
        {"model": "m", "messages": [_USER], "stream": True, "seed": HOLE},
        {"model": "m", "messages": [{"role": "user", "content": [_IMAGE]}], "stream": HOLE},
    ],
    "/v1/completions": [
        {"model": HOLE, "prompt": "hi"},
        {"model": "m", "prompt": HOLE},
        {"model": "m", "prompt": [HOLE]},
        {"model": "m", "prompt": [1, 2, HOLE]},
        *({"model": "m", "prompt": "hi", key: HOLE} for key in (
            "seed", "max_tokens", "echo", "logprobs", "suffix", "stop", "n", "best_of", "top_k", "unknown_extra",
        )),
    ],
    "/v1/embeddings": [
        {"model": HOLE, "input": "hi"},
        {"model": "emb", "input": HOLE},
        {"model": "emb", "input": [HOLE]},
        {"model": "emb", "input": [[1, HOLE]]},
        *({"model": "emb", "input": "hi", key: HOLE} for key in ("encoding_format", "dimensions", "truncate", "user", "x")),
    ],
    "/v1/rerank": [
        {"model": "rr", "query": HOLE, "documents": ["d"]},
        {"model": "rr", "query": "q", "documents": HOLE},
        {"model": "rr", "query": "q", "documents": [HOLE]},
        {"model": "rr", "query": "q", "documents": [{"text": HOLE}]},
        *({"model": "rr", "query": "q", "documents": ["d"], key: HOLE} for key in (
            "top_n", "return_documents", "return_len", "max_chunks_per_doc", "truncate", "kwargs", "x",
        )),
    ],
    "/v1/models": [
        {"model_name": HOLE},
        *({"model_name": "toy-chat", key: HOLE} for key in (
            "model_uid", "model_type", "model_engine", "model_format", "model_size_in_billions", "quantization",
            "replica", "n_gpu", "gpu_idx", "request_limits", "request_timeout", "restart_unresponsive",
            "restart_lost", "worker_ip", "node_resources",
            "enable_thinking", "model_path", "peft_model_config", "n_ctx", "sampling.top_k", "envs",
        )),
        {"model_name": "toy-chat", "n_ctx": [HOLE]},
        {"model_name": "toy-chat", "sampling": {"seed": HOLE}},
    ],
    "/v1/model_registrations/LLM": [
        {"model": HOLE},
        {"model": {"model_name": "x", "model_ability": ["chat"], "context_length": HOLE, "model_specs": []}},
        {"model": {"model_name": HOLE, "model_ability": ["chat"], "context_length": 1, "model_specs": []}},
        {"model": "{}", "persist": HOLE},
    ],
    "/v1/models/m/cancel": [{"x": HOLE}],
    "/v1/messages": [
        {"model": "m", "max_tokens": HOLE, "messages": [_USER]},
        {"model": "m", "max_tokens": 4, "messages": HOLE},
        {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": HOLE}]},
        {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": [HOLE]}]},
        {"model": "m", "max_tokens": 4, "messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]},
        {"model": "m", "max_tokens": 4, "messages": [{"role": "assistant", "content": [
            {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": HOLE}}]}, _USER]},
        {"model": "m", "max_tokens": 4, "messages": [_USER], "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"p": HOLE}}}]},
        *({"model": "m", "max_tokens": 4, "messages": [_USER], key: HOLE} for key in (
            "system", "temperature", "top_p", "top_k", "stop_sequences", "stream", "tools", "tool_choice",
            "metadata", "thinking", "output_config", "x",
        )),
    ],
    "/v1/messages/count_tokens": [
        {"model": "m", "messages": HOLE},
        {"model": "m", "messages": [{"role": "user", "content": HOLE}]},
    ],
    "/v1/responses": [
        {"model": "m", "input": HOLE},
        {"model": "m", "input": [HOLE]},
        {"model": "m", "input": [{"role": "user", "content": HOLE}]},
        {"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}]}]},
        {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {"p": HOLE}}]},
        *({"model": "m", "input": "hi", key: HOLE} for key in (
            "instructions", "max_output_tokens", "temperature", "top_p", "stream", "tools", "tool_choice",
            "text", "previous_response_id", "store", "x",
        )),
    ],
    "/v2/rerank": [
        {"model": "rr", "query": HOLE, "documents": ["d"]},
        {"model": "rr", "query": "q", "documents": [HOLE], "top_n": 1},
    ],
}  # fmt: skip


def fill(template: dict[str, Any], value: bytes) -> bytes:
    return json.dumps(template).encode().replace(json.dumps(HOLE).encode(), value, 1)


hostile_requests = st.sampled_from(sorted(TEMPLATES)).flatmap(
    lambda path: st.tuples(
        st.just(path), st.builds(fill, st.sampled_from(TEMPLATES[path]), hostile_values)
    )
)
