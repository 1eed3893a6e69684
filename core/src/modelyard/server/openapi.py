"""``GET /openapi.json``: the API description, generated from the routes and the msgspec types.

Each endpoint has one ``Operation`` below naming its request and reply types; the paths, methods
and path parameters come from the app's own routes, and every schema from
``msgspec.json.schema_components`` (JSON Schema 2020-12, which OpenAPI 3.1 uses as is). Nothing
is written by hand but the summaries. A route without an ``Operation`` is still listed, from its
docstring, and ``tests`` fail on it, so a new route cannot go undocumented unnoticed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .. import __version__
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from . import anthropic_routes as anthropic
from . import anthropic_schemas as anthropic_types
from . import api_types as T
from . import (
    docs,
    keys_routes,
    management_routes,
    openai_routes,
    registrations,
    responses_routes,
    ui,
)
from . import responses_schemas as responses_types
from .errors import JSONResponse
from .metrics import metrics_endpoint


class Operation(msgspec.Struct, frozen=True, kw_only=True):
    summary: str
    tag: str
    request: Any = None  # the JSON body's type
    response: Any = None  # the JSON type of a 200 reply (None: JSON null)
    events: Any = None  # the type of each server-sent event's data, when the body asks to stream
    error: Any = T.ErrorBody
    media: str = "application/json"  # of the 200 reply
    query: tuple[tuple[str, str], ...] = ()  # (name, description) of query parameters


_INFERENCE = "OpenAI inference"
_ANTHROPIC = "Anthropic Messages"
_RESPONSES = "OpenAI Responses"
_MODELS = "Models"
_CATALOG = "Catalog"
_SERVER = "Server"
_KEYS = "API keys"
_DETAILS = (
    ("detailed", "true to include each spec's details (Xinference's flag)"),
    ("include_builtin", "true to list the built-in families as well as the custom ones"),
)

OPERATIONS: dict[Callable[..., Any], Operation] = {
    openai_routes.chat_completions: Operation(
        summary="Chat completion (OpenAI); streamed as chunks with stream=true",
        tag=_INFERENCE, request=ChatCompletionRequest, response=T.ChatCompletion,
        events=T.ChatCompletionChunk,
    ),
    openai_routes.completions: Operation(
        summary="Text completion (OpenAI legacy); streamed with stream=true",
        tag=_INFERENCE, request=CompletionRequest, response=T.Completion, events=T.Completion,
    ),
    openai_routes.embeddings: Operation(
        summary="Embeddings (OpenAI)", tag=_INFERENCE, request=EmbeddingRequest,
        response=T.EmbeddingList,
    ),
    openai_routes.rerank: Operation(
        summary="Rerank documents against a query (Jina/Cohere/Xinference shape)",
        tag=_INFERENCE, request=RerankRequest, response=T.RerankResponse,
    ),
    anthropic.messages: Operation(
        summary="Create a message (Anthropic Messages API); streamed as events with stream=true",
        tag=_ANTHROPIC, request=anthropic_types.MessagesRequest, response=anthropic_types.Message,
        events=anthropic_types.StreamEvent, error=anthropic_types.ErrorResponse,
    ),
    anthropic.count_tokens: Operation(
        summary="Count a Messages request's input tokens (runs the prompt for one token)",
        tag=_ANTHROPIC, request=anthropic_types.CountTokensRequest,
        response=anthropic_types.TokenCount, error=anthropic_types.ErrorResponse,
    ),
    responses_routes.create_response: Operation(
        summary="Create a response (OpenAI Responses API); streamed as events with stream=true",
        tag=_RESPONSES, request=responses_types.ResponsesRequest,
        response=responses_types.Response, events=responses_types.StreamEvent,
    ),
    responses_routes.get_response: Operation(
        summary="A stored response", tag=_RESPONSES, response=responses_types.Response
    ),
    responses_routes.delete_response: Operation(
        summary="Delete a stored response", tag=_RESPONSES,
        response=responses_types.DeletedResponse,
    ),
    responses_routes.list_input_items: Operation(
        summary="A stored response's input items", tag=_RESPONSES,
        response=responses_types.InputItemList,
        query=(
            ("order", "asc or desc (the default: newest first)"),
            ("limit", "1 to 100 items (default 20)"),
            ("after", "the item id to list after"),
        ),
    ),
    management_routes.list_models: Operation(
        summary="Running and loading models", tag=_MODELS, response=T.ModelList
    ),
    management_routes.launch_model: Operation(
        summary="Launch a model (Xinference's payload)", tag=_MODELS, request=T.LaunchBody,
        response=T.Launched,
        query=(("wait_ready", "false to answer at once and follow /v1/models/{uid}/progress"),),
    ),
    management_routes.describe_model: Operation(
        summary="One model (503 while it loads)", tag=_MODELS, response=T.ModelObject
    ),
    management_routes.terminate_model: Operation(
        summary="Terminate a model and free its memory", tag=_MODELS, response=T.Deleted
    ),
    management_routes.launch_progress: Operation(
        summary="How far a launch got", tag=_MODELS, response=T.Progress
    ),
    management_routes.cancel_launch: Operation(
        summary="Cancel a launch in progress", tag=_MODELS
    ),
    management_routes.supervisor_info: Operation(
        summary="The supervisor's address (Xinference's get_supervisor_info)", tag=_MODELS
    ),
    management_routes.list_workers: Operation(
        summary="The nodes models run on (Xinference's workers list)", tag=_MODELS
    ),
    management_routes.cluster_info: Operation(
        summary="The cluster this server supervises (none when it runs every model itself)",
        tag=_MODELS,
    ),
    management_routes.abort_request: Operation(
        summary="Abort one request in flight (its X-Request-Id or request_id)", tag=_MODELS
    ),
    management_routes.model_logs: Operation(
        summary="The last lines the model's runner wrote", tag=_MODELS, response=T.ModelLogs,
        query=(("lines", "how many, 1 to 200 (default 50)"),),
    ),
    management_routes.scale_model: Operation(
        summary="Run N replicas of a running model (removed ones drain first)", tag=_MODELS,
        request=T.ScaleBody, response=T.ModelObject,
    ),
    management_routes.add_replicas: Operation(
        summary="Add replicas to a running model (Xinference's add_model_replica)", tag=_MODELS,
        request=T.AddReplicasBody, response=T.ModelObject,
    ),
    management_routes.remove_replica: Operation(
        summary="Drain and stop one replica (Xinference's terminate_model_replica)", tag=_MODELS,
        response=T.ReplicaRemoved,
    ),
    registrations.list_registrations: Operation(
        summary="Model families of a type (custom, and built-in when asked)", tag=_CATALOG,
        response=list[T.Registration], query=_DETAILS,
    ),
    registrations.register_model: Operation(
        summary="Register a custom model family", tag=_CATALOG,
        request=registrations.RegistrationBody,
    ),
    registrations.get_registration: Operation(
        summary="One model family", tag=_CATALOG, response=T.Registration
    ),
    registrations.unregister_model: Operation(
        summary="Remove a custom model family", tag=_CATALOG
    ),
    registrations.query_engines: Operation(
        summary="Per engine: what it can run of this model here, or why not", tag=_CATALOG,
        response=T.EngineTable,
    ),
    registrations.estimate_memory: Operation(
        summary="Memory a model needs here: weights, KV cache, overhead (cal-model-mem)",
        tag=_CATALOG, response=T.MemoryEstimate,
        query=(
            ("model_type", "LLM, embedding or rerank (default: any)"),
            ("model_format", "e.g. ggufv2, pytorch"), ("size", "billions, e.g. 7 or 0_5"),
            ("quantization", "e.g. Q4_K_M"), ("model_engine", "default: the engine chosen"),
            ("context_length", "tokens one request may use"),
            ("parallel", "requests served at once"),
        ),
    ),
    management_routes.health: Operation(
        summary="Whether the server answers (open without an API key)", tag=_SERVER,
        response=T.Health,
    ),
    keys_routes.list_keys: Operation(
        summary="The API keys in the key store (scope admin)", tag=_KEYS, response=T.ApiKeyList
    ),
    keys_routes.create_key: Operation(
        summary="Make an API key; the key is in this reply only (scope admin)", tag=_KEYS,
        request=keys_routes.CreateKey, response=T.NewApiKey,
    ),
    keys_routes.revoke_key: Operation(
        summary="Revoke an API key by its id; effective at once (scope admin)", tag=_KEYS,
        response=T.ApiKey,
    ),
    management_routes.status: Operation(
        summary="Server health, version and models by state", tag=_SERVER, response=T.Status
    ),
    management_routes.cluster_auth: Operation(
        summary="Whether the server asks for API keys (Xinference)", tag=_SERVER,
        response=T.ClusterAuth,
    ),
    management_routes.cluster_version: Operation(
        summary="Server version (Xinference)", tag=_SERVER, response=T.ClusterVersion
    ),
    management_routes.list_plugins: Operation(
        summary="Installed engine plugins and their engines", tag=_SERVER, response=T.Plugins
    ),
    management_routes.list_environments: Operation(
        summary="Each engine's Python environment: interpreter, library, available or why not",
        tag=_SERVER,
        response=T.Environments,
    ),
    metrics_endpoint: Operation(
        summary="Prometheus metrics", tag=_SERVER, response=str,
        media="text/plain; version=0.0.4",
    ),
    docs.docs_page: Operation(
        summary="This API description, rendered (offline)", tag=_SERVER, response=str,
        media="text/html",
    ),
    ui.ui_page: Operation(
        summary="The web UI", tag=_SERVER, response=str, media="text/html"
    ),
    ui.ui_asset: Operation(
        summary="The web UI's own files (scripts, styles)", tag=_SERVER, response=str,
        media="application/octet-stream",
    ),
    docs.docs_asset: Operation(
        summary="The documentation page's own files (Swagger UI)", tag=_SERVER, response=str,
        media="application/octet-stream",
    ),
}  # fmt: skip

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def _routes(routes: Sequence[BaseRoute]) -> list[tuple[str, str, Callable[..., Any]]]:
    found = []
    for route in routes:
        if isinstance(route, Route):
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                found.append((route.path, method, route.endpoint))
    return found


def _operation(path: str, method: str, endpoint: Callable[..., Any]) -> Operation:
    known = OPERATIONS.get(endpoint)
    if known is not None:
        return known
    doc = (endpoint.__doc__ or "").strip().splitlines()
    return Operation(summary=doc[0] if doc else f"{method} {path}", tag="Undocumented")


def build(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``routes``."""
    found = [(path, method, endpoint, _operation(path, method, endpoint)) for path, method, endpoint in _routes(routes)]  # fmt: skip
    types: list[Any] = []
    for *_, op in found:
        types += [t for t in (op.request, op.response, op.events, op.error) if t is not None]
    unique = list(dict.fromkeys(types))
    schemas, components = msgspec.json.schema_components(
        unique, ref_template="#/components/schemas/{name}"
    )
    schema_of = dict(zip(unique, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, op in found:
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PARAM.findall(path)
        ]
        parameters += [
            {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
            for name, text in op.query
        ]  # fmt: skip
        ok: dict[str, Any] = {
            "description": "OK",
            "content": {op.media: {"schema": schema_of.get(op.response, {"type": "null"})}},
        }
        if op.events is not None:
            ok["description"] = "OK; with stream=true, one server-sent event per item"
            ok["content"]["text/event-stream"] = {"schema": schema_of[op.events]}
        operation: dict[str, Any] = {
            "operationId": f"{method.lower()}_{endpoint.__name__}_{_slug(path)}",
            "summary": op.summary,
            "tags": [op.tag],
            "responses": {
                "200": ok,
                "default": {
                    "description": "An error, with its HTTP status",
                    "content": {"application/json": {"schema": schema_of[op.error]}},
                },
            },
        }
        if parameters:
            operation["parameters"] = parameters
        if op.request is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": schema_of[op.request]}},
            }
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "modelyard",
            "version": __version__,
            "description": "Open models behind the OpenAI, Anthropic and Xinference APIs.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


def _slug(path: str) -> str:
    return re.sub(r"[^a-zA-Z0-9]+", "_", path).strip("_")


async def openapi_json(request: Request) -> Response:
    spec = getattr(request.app.state, "openapi", None)
    if spec is None:  # built once per app, on first use: the routes do not change
        spec = request.app.state.openapi = build(request.app.routes)
    return JSONResponse(spec)


OPERATIONS[openapi_json] = Operation(
    summary="This API description (OpenAPI 3.1)", tag=_SERVER, response=dict[str, Any]
)
