"""No cross-site use: the checks a browser page cannot get around, before any route runs.

- ``Host`` must name this server (the bound address, loopback names, ``--allowed-host``): a
  DNS-rebinding page reaches 127.0.0.1 under its own name, and is refused here.
- A request with an ``Origin`` other than this server's own or a ``--cors-origin`` is refused:
  browsers send one on every cross-site POST, including the "simple" ones that skip a preflight.
- A body must be JSON (``application/json`` or ``application/*+json``), else 415: a page may post
  ``text/plain`` or a form cross-site without a preflight, never JSON.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, InvalidRequest, ModelyardError
from .errors import error_response
from .logsafe import safe

log = logging.getLogger("modelyard.server")

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnsupportedMediaType(InvalidRequest):
    status = 415


def host_name(value: str) -> str:
    """``example.com:9997`` → ``example.com``; ``[::1]:9997`` → ``[::1]``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Guard:
    def __init__(
        self, app: ASGIApp, *, allowed_hosts: tuple[str, ...], cors_origins: tuple[str, ...]
    ) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.hosts = frozenset(allowed_hosts)
        self.origins = frozenset(cors_origins)

    def check(self, scope: Scope) -> None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        if host is not None and not self.any_host and host_name(host) not in self.hosts:
            raise InvalidRequest(
                f"the Host header {host!r} does not name this server; if clients reach it by that "
                f"name, start it with --allowed-host {host_name(host)}",
                code="host_not_allowed",
            )
        origin = headers.get("origin")
        if (
            origin is not None
            and origin.rstrip("/") not in self.origins
            and "*" not in self.origins
        ):
            same = host is not None and origin.lower().split("://", 1)[-1] == host.lower()
            if not same:
                raise Forbidden(
                    f"cross-origin request from {origin!r} refused; to let that web page use this "
                    f"server, start it with --cors-origin {origin}",
                    code="cross_origin",
                )
        if scope["method"] in _BODY_METHODS:
            content_type = headers.get("content-type")
            has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
            if (content_type is not None or has_body) and not is_json(content_type or ""):
                raise UnsupportedMediaType(
                    f"this route takes a JSON body: send it with Content-Type: application/json "
                    f"(got {content_type or 'no Content-Type'!r})",
                    code="unsupported_media_type",
                )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self.check(scope)
        except ModelyardError as exc:
            log.warning(
                "refused %s %s: %s", scope["method"], safe(scope["path"]), safe(exc.message)
            )
            await error_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)
