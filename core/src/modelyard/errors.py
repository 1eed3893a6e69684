"""One error hierarchy for everything a user should see.

Each error carries its own message, HTTP status and OpenAI error ``type``/``code``, so the server
has a single handler that maps any of them to an OpenAI-style body, and a runner can send one across
the process boundary (``to_dict``/``from_dict``) and have it re-raised unchanged in the server.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar


class ModelyardError(Exception):
    status: ClassVar[int] = 500
    type: ClassVar[str] = "internal_error"

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
            "message": self.message,
            "param": self.param,
            "code": self.code,
            "retry_after": self.retry_after,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ModelyardError:
        cls = _BY_NAME.get(data.get("kind", ""), ModelyardError)
        return cls(
            data["message"],
            param=data.get("param"),
            code=data.get("code"),
            retry_after=data.get("retry_after"),
        )


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


def _subclasses(cls: type[ModelyardError]) -> list[type[ModelyardError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_subclasses(sub))
    return found


_BY_NAME = {cls.__name__: cls for cls in _subclasses(ModelyardError)}
