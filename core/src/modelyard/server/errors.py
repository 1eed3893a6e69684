"""Every failure leaves the server as one JSON shape, with the right status.

The body carries OpenAI's ``error`` object and Xinference's ``detail`` string, so that the
``openai`` SDK and ``xinference-client`` both show the message. ``ModelyardError`` subclasses map
through one handler; Starlette's own HTTP errors (unknown route, wrong method) and request bodies
that fail msgspec validation map to the same shape; anything else is a bug: logged with its
traceback and answered with a JSON 500.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import InvalidRequest, ModelyardError
from ..redact import redact
from . import limits

log = logging.getLogger("modelyard.server")

T = TypeVar("T")

_PATH_IN_MESSAGE = re.compile(r"at `\$(?P<path>[^`]*)`")
_UNKNOWN_FIELD = re.compile(r"unknown field `(?P<name>[^`]*)`")


class JSONResponse(Response):
    """A JSON response encoded by msgspec (faster than json.dumps, and handles Structs)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content)


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    # Every error leaves through here: none names where the server is installed (the log does).
    message = redact(message)
    return {
        "error": {"message": message, "type": type_, "param": param, "code": code},
        "detail": message,
    }


def error_response(exc: ModelyardError) -> JSONResponse:
    headers = {"retry-after": str(exc.retry_after)} if exc.retry_after is not None else None
    body = error_body(exc.message, exc.type, param=exc.param, code=exc.code)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def observe_error(scope: Scope, kind: str) -> None:
    """Count an error in the app's metrics (when metrics are on)."""
    app = scope.get("app")
    metrics = getattr(getattr(app, "state", None), "metrics", None)
    if metrics is not None:
        metrics.error(scope, kind)


async def modelyard_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    if exc.status >= 500 or exc.status in (401, 403):
        # 503 (loading, dead runner) is routine; other 5xx, and refusals by policy (a path
        # outside the model roots, remote code), deserve attention.
        log.log(
            logging.INFO if exc.status == 503 else logging.WARNING,
            "%s %s -> %s: %s",
            request.method,
            request.url.path,
            exc.status,
            exc.message,
        )
    observe_error(request.scope, type(exc).__name__)
    return error_response(exc)


_HTTP_ERROR_TYPES = {404: "not_found_error", 405: "invalid_request_error"}


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see the OpenAI and Xinference API routes"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    type_ = _HTTP_ERROR_TYPES.get(exc.status_code, "invalid_request_error")
    headers = dict(exc.headers or {})
    return JSONResponse(error_body(message, type_), status_code=exc.status_code, headers=headers)


def invalid_body(
    exc: msgspec.DecodeError | msgspec.ValidationError | ValueError, what: str
) -> InvalidRequest:
    """msgspec's message, kept whole because it names the JSON path (``$.temperature``)."""
    text = str(exc)
    found = _PATH_IN_MESSAGE.search(text)
    param = (found.group("path").lstrip(".") or None) if found else None
    unknown = _UNKNOWN_FIELD.search(text)
    if unknown is not None:  # the unknown key itself is what the caller must fix
        param = f"{param}.{unknown.group('name')}" if param else unknown.group("name")
    if isinstance(exc, msgspec.ValidationError):
        return InvalidRequest(f"invalid {what}: {text}", param=param)
    return InvalidRequest(f"malformed JSON in {what}: {text}; send one JSON object", param=param)


async def read_body(request: Request) -> bytes:
    """The whole body, refused with a 413 as soon as it is known to exceed the server's limit
    (its Content-Length, or the bytes counted so far), and with a 400 when nested too deep."""
    limit = limits.max_body_size(request)
    size = limits.declared_size(request)
    if size is not None and size > limit:
        raise limits.too_large(limit, size)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise limits.too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise InvalidRequest("the request body is empty; send a JSON object")
    limits.check_depth(body)
    return body


async def decode_body(
    request: Request, decoder: msgspec.json.Decoder[T], what: str = "request body"
) -> T:
    """Read and validate a JSON body; every decode failure becomes a 400 naming the field."""
    body = await read_body(request)
    try:
        return decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise invalid_body(exc, what) from None


class CatchAll:
    """Innermost guard: an exception no handler knows is a bug. Log it with its traceback and
    answer a JSON 500 (if nothing was sent yet) instead of Starlette's text/plain page."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            observe_error(scope, "InternalError")
            if started:
                return
            message = f"internal error ({type(exc).__name__}: {exc}); this is a modelyard bug, please report it"
            response = JSONResponse(error_body(message, "internal_error"), status_code=500)
            await response(scope, receive, send)
