"""``serve()``: run the app on uvicorn. Importing this module starts nothing.

On SIGTERM or Ctrl-C the server stops accepting connections, ends the streams in flight with a
final error event and answers waiting requests with 503 (``app.begin_shutdown``), then stops
every runner; ``shutdown_timeout`` bounds the wait for connections, and runners get the same
grace (at most 5 s) before they are killed.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Mapping
from typing import Any

from .app import begin_shutdown, create_app
from .logs import setup_logging
from .security import Security, is_loopback

log = logging.getLogger("modelyard.server")
DEFAULT_SHUTDOWN_TIMEOUT = 5.0


def serve(
    host: str = "127.0.0.1",
    port: int = 9997,
    log_level: str = "info",
    security: Security | None = None,
    *,
    max_body_size: int | None = None,
    request_timeout: float | None = None,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    cluster: str | None = None,
    placement: str = "spread",
    on_demand: Mapping[str, Any] | None = None,
    warm_runners: bool = True,
) -> None:
    """Serve the OpenAI and management API until interrupted (binds 127.0.0.1 unless told).

    Logs go to stderr and ``<home>/logs/server_<start-ms>/modelyard.log``; uvicorn's own logging
    config is left out so that its records reach the same handlers. ``on_demand``: the manager's
    ``keep_alive``, ``max_loaded_models``, ``auto_launch`` and ``load_wait``."""
    import uvicorn  # late: importing the server package must stay cheap and side-effect free

    path = setup_logging("server", log_level)
    security = security or Security.from_options(host=host)
    options: dict[str, Any] = {
        "request_timeout": request_timeout or None,
        "terminate_grace": min(shutdown_timeout, 5.0),
        **(on_demand or {}),
        "warm_runners": warm_runners,
    }
    if cluster is not None:
        options["cluster"] = join_cluster(cluster, placement)
    app = create_app(security=security, max_body_size=max_body_size, manager_options=options)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # What the imports and the app left lives as long as the process: frozen, the
            # collections that traffic triggers skip it (a full one was a ~30 ms stall).
            gc.freeze()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Runs on the event loop once a signal asked to exit, before uvicorn waits for the
            # open connections: without this a long stream would hold the exit for its length.
            begin_shutdown(app)
            await super().shutdown(sockets)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=max(1, round(shutdown_timeout)),
    )
    log.info("modelyard serving on http://%s:%d (log file %s)", host, port, path)
    warn_if_exposed(host, security)
    server = Server(config)
    try:
        server.run()
    finally:
        if cluster is not None:
            options["cluster"].disconnect()
    if not server.started:
        sys.exit(3)  # what uvicorn.run does when the server could not start (e.g. port taken)


def join_cluster(address: str, placement: str = "spread") -> Any:
    """Connect to the Ray cluster at ``address`` as its supervisor, or exit saying how to start one."""
    from ..cluster import RayCluster
    from ..errors import LaunchError

    cluster = RayCluster(address, "pack" if placement == "pack" else "spread")
    try:
        cluster.connect()
    except LaunchError as exc:
        log.error("%s", exc.message)
        sys.exit(2)
    log.info("supervising the Ray cluster at %s: %d node(s)", address, len(cluster.nodes()))
    return cluster


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
