"""The Starlette application: one plain list of routes over a ModelManager.

``create_app`` builds everything from arguments and the environment and starts nothing; the
manager's runners start on the first launch and stop with the app (lifespan shutdown) when the
app created the manager itself. ``begin_shutdown`` (called by ``serve`` when a signal arrives,
before it waits for open connections) ends streams in flight with a final error event and answers
waiting requests with 503, so that shutdown never waits for a long generation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from ..errors import ModelyardError
from . import anthropic_routes as anthropic
from . import docs, ui
from . import keys_routes as keys
from . import management_routes as manage
from . import openai_routes as openai
from . import registrations as catalog
from . import responses_routes as responses
from .auth import HEALTH_PATH, Auth
from .errors import CatchAll, http_error_handler, modelyard_error_handler
from .guard import Guard
from .metrics import Metrics, MetricsMiddleware, metrics_enabled, metrics_endpoint
from .models import Manager
from .openapi import openapi_json
from .responses_store import ResponseStore
from .security import Security

ROUTES = [
    # OpenAI inference
    Route("/v1/chat/completions", openai.chat_completions, methods=["POST"]),
    Route("/v1/completions", openai.completions, methods=["POST"]),
    Route("/v1/embeddings", openai.embeddings, methods=["POST"]),
    Route("/v1/rerank", openai.rerank, methods=["POST"]),
    Route("/rerank", openai.rerank, methods=["POST"]),  # Jina's and Cohere v1's path
    Route("/v2/rerank", openai.rerank, methods=["POST"]),  # Cohere v2 (litellm's cohere provider)
    # OpenAI Responses API
    Route("/v1/responses", responses.create_response, methods=["POST"]),
    Route("/v1/responses/{response_id}", responses.get_response, methods=["GET"]),
    Route("/v1/responses/{response_id}", responses.delete_response, methods=["DELETE"]),
    Route("/v1/responses/{response_id}/input_items", responses.list_input_items, methods=["GET"]),
    # Anthropic Messages API (also at Xinference's /anthropic prefix)
    Route("/v1/messages", anthropic.messages, methods=["POST"]),
    Route("/v1/messages/count_tokens", anthropic.count_tokens, methods=["POST"]),
    Route("/anthropic/v1/messages", anthropic.messages, methods=["POST"]),
    Route("/anthropic/v1/messages/count_tokens", anthropic.count_tokens, methods=["POST"]),
    # Model lifecycle (OpenAI list/retrieve/delete, Xinference launch and progress)
    Route("/v1/models", manage.list_models, methods=["GET"]),
    Route("/v1/models", manage.launch_model, methods=["POST"]),
    Route("/v1/models/{uid}", manage.describe_model, methods=["GET"]),
    Route("/v1/models/{uid}", manage.terminate_model, methods=["DELETE"]),
    Route("/v1/models/{uid}/progress", manage.launch_progress, methods=["GET"]),
    Route("/v1/models/{uid}/cancel", manage.cancel_launch, methods=["POST"]),
    Route("/v1/models/{uid}/requests/{request_id}/abort", manage.abort_request, methods=["POST"]),
    Route("/v1/models/{uid}/logs", manage.model_logs, methods=["GET"]),
    Route("/v1/models/{uid}/scale", manage.scale_model, methods=["POST"]),
    Route("/v1/models/{uid}/replicas", manage.add_replicas, methods=["POST"]),
    Route("/v1/models/{uid}/replicas/{replica_id}", manage.remove_replica, methods=["DELETE"]),
    # Catalog
    Route("/v1/model_registrations/{model_type}", catalog.list_registrations, methods=["GET"]),
    Route("/v1/model_registrations/{model_type}", catalog.register_model, methods=["POST"]),
    Route(
        "/v1/model_registrations/{model_type}/{model_name}",
        catalog.get_registration,
        methods=["GET"],
    ),
    Route(
        "/v1/model_registrations/{model_type}/{model_name}",
        catalog.unregister_model,
        methods=["DELETE"],
    ),
    Route("/v1/engines/{model_name}", catalog.query_engines, methods=["GET"]),
    Route("/v1/engines/{model_type}/{model_name}", catalog.query_engines, methods=["GET"]),
    Route("/v1/cal_model_mem/{model_name}", catalog.estimate_memory, methods=["GET"]),
    # Server
    Route(HEALTH_PATH, manage.health, methods=["GET"]),
    Route("/status", manage.status, methods=["GET"]),
    Route("/v1/cluster/auth", manage.cluster_auth, methods=["GET"]),
    Route("/v1/cluster/version", manage.cluster_version, methods=["GET"]),
    Route("/v1/plugins", manage.list_plugins, methods=["GET"]),
    Route("/v1/environments", manage.list_environments, methods=["GET"]),
    Route("/v1/workers", manage.list_workers, methods=["GET"]),
    Route("/v1/supervisor", manage.supervisor_info, methods=["GET"]),
    Route("/v1/cluster", manage.cluster_info, methods=["GET"]),
    # API description, generated from the msgspec types, and its offline rendering
    Route("/openapi.json", openapi_json, methods=["GET"]),
    Route("/docs", docs.docs_page, methods=["GET"]),
    Route("/docs/assets/{name}", docs.docs_asset, methods=["GET"]),
    # The web UI (its own files; the API calls it makes carry the key)
    Route(ui.UI_PREFIX, ui.ui_page, methods=["GET"]),
    Route(ui.UI_PREFIX + "/{name}", ui.ui_asset, methods=["GET"]),
    # API keys (scope admin)
    Route("/v1/keys", keys.list_keys, methods=["GET"]),
    Route("/v1/keys", keys.create_key, methods=["POST"]),
    Route("/v1/keys/{key_id}", keys.revoke_key, methods=["DELETE"]),
]
METRICS_ROUTE = Route("/metrics", metrics_endpoint, methods=["GET"])


def _default_manager(options: Mapping[str, Any]) -> Manager:
    from ..runner import ModelManager

    return ModelManager(**options)


def create_app(
    manager: Manager | None = None,
    security: Security | None = None,
    *,
    max_body_size: int | None = None,
    manager_options: Mapping[str, Any] | None = None,
) -> Starlette:
    """The HTTP app over ``manager`` (a new local ModelManager when None, made with
    ``manager_options`` and closed at shutdown). ``max_body_size``: the largest request body
    accepted, in bytes (default 32 MiB).

    ``security`` (default ``Security()``: no keys, loopback Host names only, no CORS, the default
    model roots, no remote code) is checked by middleware before any route runs.

    Tests and embedders may set ``app.state.catalog``, ``app.state.plugin_manager`` and
    ``app.state.hardware`` (a probe function) to replace the process-wide ones."""
    owned = manager is None
    active: Manager = _default_manager(manager_options or {}) if manager is None else manager

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.stopping = anyio.Event()
        if not owned:
            yield
            return
        # The manager's background tasks (runner watchers) live exactly as long as the app.
        async with active:  # type: ignore[attr-defined]
            yield

    security = security or Security()
    routes = list(ROUTES)
    # Outermost first: Host/Origin/Content-Type, then CORS (preflights answered before any key
    # is asked for), then the key check, then metrics, so that refused requests cost nothing.
    middleware: list[Middleware] = [
        Middleware(Guard, allowed_hosts=security.allowed_hosts, cors_origins=security.cors_origins)
    ]
    if security.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(security.cors_origins),
                allow_methods=["*"],
                allow_headers=["*"],
            )
        )
    middleware.append(Middleware(Auth, keys=security.keys, metrics_open=security.metrics_open))
    metrics: Metrics | None = None
    if metrics_enabled():
        metrics = Metrics()
        routes.append(METRICS_ROUTE)
        # An endpoint served at several paths (/v1/messages and /anthropic/v1/messages, the rerank
        # dialects) is labelled with its first, canonical one.
        metrics.routes = {route.endpoint: route.path for route in reversed(routes)}
        middleware.append(Middleware(MetricsMiddleware, metrics=metrics))
    middleware.append(Middleware(CatchAll))
    handlers: dict[Any, Any] = {
        ModelyardError: modelyard_error_handler,
        HTTPException: http_error_handler,
    }
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers=handlers, lifespan=lifespan
    )
    app.state.manager = active
    app.state.stopping = None  # an anyio.Event once the lifespan started
    app.state.max_body_size = max_body_size
    app.state.metrics = metrics
    app.state.security = security
    app.state.catalog = None
    app.state.plugin_manager = None
    app.state.hardware = None
    app.state.responses = ResponseStore()
    return app


def begin_shutdown(app: Starlette) -> None:
    """Tell streams and waiting requests that the server is going down (call on its event loop)."""
    stopping = getattr(app.state, "stopping", None)
    if stopping is not None:
        stopping.set()
