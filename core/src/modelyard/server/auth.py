"""API keys on every route once any key is configured (see ``modelyard.keys``).

The key comes as ``Authorization: Bearer <key>`` (openai SDK, xinference-client, modelyard's
client) or ``x-api-key: <key>`` (anthropic SDK). A missing or unknown key is a 401 with
``WWW-Authenticate``; a valid key without the route's scope is a 403. Open without a key: the
health route, ``/v1/cluster/auth`` (xinference-client asks it, keyless, whether to send its key),
and ``/metrics`` when the server was told so. Scopes:

- ``inference``: the OpenAI, Anthropic and Responses inference routes;
- ``manage``: launching, terminating and cancelling models, aborting requests (any caller's),
  registering and unregistering models, and reading a model's log (engines may log prompts);
- ``admin``: the key routes (``/v1/keys``);
- any valid key: every other route (listings, status, progress, engines).

The web UI's own files (``/ui``, ``/ui/<file>``) are open too: they hold no data, and the page
asks for the key before it calls the API.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, ModelyardError, Unauthorized
from ..keys import Keys, Principal
from .errors import error_response
from .logsafe import safe
from .ui import UI_PREFIX

log = logging.getLogger("modelyard.server")

HEALTH_PATH = "/health"
OPEN_PATHS = frozenset({HEALTH_PATH, "/v1/cluster/auth"})
INFERENCE_PATHS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/rerank",
        "/rerank",  # Jina's and Cohere v1's path
        "/v2/rerank",  # Cohere v2's
        "/v1/messages",
        "/v1/messages/count_tokens",
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/count_tokens",
        "/v1/responses",
    }
)
_MANAGED = ("/v1/models", "/v1/model_registrations")
_CHALLENGE = 'Bearer realm="modelyard"'


def required_scope(method: str, path: str) -> str | None:
    """The scope a request needs; None when any valid key will do."""
    if path.startswith("/v1/keys"):
        return "admin"
    if path == "/v1/cluster":  # the Ray address: whoever has it can join nodes
        return "manage"
    if path in INFERENCE_PATHS or path.startswith("/v1/responses/"):
        return "inference"
    if method not in ("GET", "HEAD") and path.startswith(_MANAGED):
        return "manage"
    if path.startswith("/v1/models/") and path.endswith("/logs"):
        return "manage"
    return None


def presented_key(headers: Headers) -> str | None:
    authorization = headers.get("authorization")
    if authorization:
        kind, _, value = authorization.partition(" ")
        if kind.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class Auth:
    def __init__(self, app: ASGIApp, *, keys: Keys, metrics_open: bool = False) -> None:
        self.app = app
        self.keys = keys
        self.open = OPEN_PATHS | ({"/metrics"} if metrics_open else set())

    async def authorize(self, scope: Scope) -> Principal | None:
        path = scope["path"]
        is_ui = path == UI_PREFIX or path.startswith(UI_PREFIX + "/")
        if path in self.open or is_ui or not self.keys.enabled():
            return None
        key = presented_key(Headers(scope=scope))
        how = "send it as `Authorization: Bearer <key>` or `x-api-key: <key>`"
        if key is None:
            raise Unauthorized(
                f"this server requires an API key: {how} (`modelyard keys create` makes one, "
                "`--api-key`/MODELYARD_API_KEY passes it to the CLI)",
                code="missing_api_key",
            )
        # Inline, not in a worker thread: the store costs one stat() per request and a re-read of
        # a small file only after `modelyard keys` changed it; a thread hop would cost more.
        principal = self.keys.check(key)
        if principal is None:
            raise Unauthorized(
                f"the API key is not valid (mistyped or revoked); {how} with a current key",
                code="invalid_api_key",
            )
        needed = required_scope(scope["method"], scope["path"])
        if needed is not None and needed not in principal.scopes:
            raise Forbidden(
                f"the API key {principal.key_id} lacks the `{needed}` scope that "
                f"{scope['method']} {scope['path']} needs; use a key with it "
                f"(modelyard keys create --scope {needed})",
                code="missing_scope",
            )
        return principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            principal = await self.authorize(scope)
        except ModelyardError as exc:
            log.warning(
                "refused %s %s from %s: %s (%s)",
                scope["method"],
                safe(scope["path"]),
                (scope.get("client") or ("?",))[0],
                exc.code,
                exc.status,
            )
            response = error_response(exc)
            if exc.status == 401:
                challenge = _CHALLENGE
                if exc.code == "invalid_api_key":  # RFC 6750: no error code when none was sent
                    challenge += ', error="invalid_token"'
                response.headers["www-authenticate"] = challenge
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["api_key_id"] = principal.key_id if principal else None
        await self.app(scope, receive, send)
