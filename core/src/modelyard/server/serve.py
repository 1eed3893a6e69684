"""``serve()``: run the app on uvicorn. Importing this module starts nothing."""

from __future__ import annotations

import logging

from .app import create_app
from .logs import setup_logging

log = logging.getLogger("modelyard.server")


def serve(host: str = "127.0.0.1", port: int = 9997, log_level: str = "info") -> None:
    """Serve the OpenAI and management API until interrupted (binds 127.0.0.1 unless told).

    Logs go to stderr and ``<home>/logs/server_<start-ms>/modelyard.log``; uvicorn's own logging
    config is left out so that its records reach the same handlers."""
    import uvicorn  # late: importing the server package must stay cheap and side-effect free

    path = setup_logging("server", log_level)
    app = create_app()
    log.info("modelyard serving on http://%s:%d (log file %s)", host, port, path)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=10,
    )
