"""One error hierarchy for everything a user should see.

Each error carries its own message, HTTP status and OpenAI error ``type``/``code``, so the server
has a single handler that maps any of them to an OpenAI-style body, and a runner can send one across
the process boundary (``to_dict``/``from_dict``) and have it re-raised unchanged in the server. The
frame carries the status and type themselves, not only the class name: a plugin's own subclass
(imported in the runner, perhaps never in the server) keeps its meaning on the other side.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ModelyardError(Exception):
    # Class defaults; an error rebuilt from a runner's frame sets its own on the instance.
    status: int = 500
    type: str = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": type(self).__name__,
            "status": self.status,
            "type": self.type,
            "message": self.message,
            "param": self.param,
            "code": self.code,
            "retry_after": self.retry_after,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelyardError:
        """The error a ``to_dict`` describes: its own class when this process knows one by that
        name with the same status and type, otherwise a ``ModelyardError`` that carries the sent
        status, type, code and param (so a plugin's class never degrades to a 500)."""
        message = str(data.get("message") or "unknown error")
        status = data.get("status")
        kind = data.get("type")
        param, code, retry_after = data.get("param"), data.get("code"), data.get("retry_after")
        cls = _class_named(str(data.get("kind", "")))
        if (
            cls is not None
            and (status is None or cls.status == status)
            and (kind is None or cls.type == kind)
        ):
            try:
                return cls(message, param=param, code=code, retry_after=retry_after)
            except TypeError:  # a subclass with a constructor of its own
                pass
        error = ModelyardError(message, param=param, code=code, retry_after=retry_after)
        if isinstance(status, int) and 400 <= status <= 599:
            error.status = status
        elif cls is not None:
            error.status = cls.status
        if isinstance(kind, str) and kind:
            error.type = kind
        elif cls is not None:
            error.type = cls.type
        return error


class InvalidRequest(ModelyardError):
    """The request itself is wrong: malformed, out of range, or asks what the model cannot do."""

    status = 400
    type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "context_length_exceeded")
        super().__init__(message, **kw)


class Unsupported(InvalidRequest):
    """The model or its engine cannot do what was asked (chat on an embedding model, tools, ...)."""

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "unsupported")
        super().__init__(message, **kw)


class Unauthorized(ModelyardError):
    """No API key, or one the server does not know (HTTP 401 with ``WWW-Authenticate``)."""

    status = 401
    type = "authentication_error"


class Forbidden(ModelyardError):
    """A valid request the server refuses by policy: a missing scope, a path outside the model
    roots, remote code the server does not allow, a cross-site request."""

    status = 403
    type = "permission_error"


class PayloadTooLarge(ModelyardError):
    """The request body is larger than the server accepts (``serve --max-body-size``)."""

    status = 413
    type = "invalid_request_error"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "request_too_large")
        super().__init__(message, **kw)


class NotFound(ModelyardError):
    status = 404
    type = "not_found_error"


class ModelNotFound(NotFound):
    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "model_not_found")
        super().__init__(message, **kw)


class Conflict(ModelyardError):
    status = 409
    type = "conflict_error"


class Overloaded(ModelyardError):
    """Too many requests waiting for one model; the client should retry later."""

    status = 429
    type = "rate_limit_error"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("retry_after", 1)
        super().__init__(message, **kw)


class Unavailable(ModelyardError):
    """The model cannot answer now: still loading, failed, or its runner died."""

    status = 503
    type = "service_unavailable"


class GatewayTimeout(ModelyardError):
    """The model did not answer within the request's deadline (``request_timeout``)."""

    status = 504
    type = "timeout_error"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "request_timeout")
        super().__init__(message, **kw)


class RequestAborted(ModelyardError):
    """The request was aborted through ``POST /v1/models/{uid}/requests/{request_id}/abort``.
    499: nginx's "client closed request", the nearest status for a request ended on request."""

    status = 499
    type = "request_aborted"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "request_aborted")
        super().__init__(message, **kw)


class LaunchError(ModelyardError):
    """A launch that cannot succeed as asked: no engine fits, not enough memory, load failed."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, **kw: Any) -> None:
        kw.setdefault("code", "launch_failed")
        super().__init__(message, **kw)


class CatalogError(ModelyardError):
    """A catalog or registration file is invalid; the message names file, entry and field."""

    status = 400
    type = "invalid_request_error"


class EngineError(ModelyardError):
    """The engine failed while serving a request that looked valid."""

    status = 500
    type = "engine_error"


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'a' or 'b'?"`` naming the known names closest to a misspelt ``name``, or
    "" when none is close: the hint to append when refusing an unknown parameter."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _class_named(name: str) -> type[ModelyardError] | None:
    """The ModelyardError subclass called ``name``, looked up now: plugins imported after this
    module define classes of their own."""
    pending: list[type[ModelyardError]] = [ModelyardError]
    while pending:
        cls = pending.pop()
        if cls.__name__ == name:
            return cls
        pending.extend(cls.__subclasses__())
    return None
