"""``serve()``: run the app on uvicorn. Importing this module starts nothing."""

from __future__ import annotations

import logging
from typing import Any

from .app import create_app
from .logs import setup_logging
from .security import Security, is_loopback

log = logging.getLogger("modelyard.server")


def serve(
    host: str = "127.0.0.1",
    port: int = 9997,
    log_level: str = "info",
    security: Security | None = None,
    *,
    max_body_size: int | None = None,
    request_timeout: float | None = None,
) -> None:
    """Serve the OpenAI and management API until interrupted (binds 127.0.0.1 unless told).

    Logs go to stderr and ``<home>/logs/server_<start-ms>/modelyard.log``; uvicorn's own logging
    config is left out so that its records reach the same handlers."""
    import uvicorn  # late: importing the server package must stay cheap and side-effect free

    path = setup_logging("server", log_level)
    security = security or Security.from_options(host=host)
    options: dict[str, Any] = {"request_timeout": request_timeout or None}
    app = create_app(security=security, max_body_size=max_body_size, manager_options=options)
    log.info("modelyard serving on http://%s:%d (log file %s)", host, port, path)
    warn_if_exposed(host, security)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=10,
    )


def warn_if_exposed(host: str, security: Security) -> None:
    if is_loopback(host):
        return
    if not security.keys.enabled():
        log.warning(
            "bound to %s, beyond this machine, WITHOUT API KEYS: anyone who reaches this port can "
            "run, launch and stop models. Create a key (`modelyard keys create --scope inference`) "
            "or start with --api-key, or bind 127.0.0.1",
            host,
        )
    if "*" in security.allowed_hosts:
        log.warning(
            "bound to every interface with no --allowed-host: any Host header is accepted; name "
            "the server's host names with --allowed-host to refuse DNS-rebinding pages"
        )
