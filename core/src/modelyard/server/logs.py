"""Logging for the server and runner processes: the console plus a rotating file per process run.

Files go to ``<home>/logs/<role>_<start-ms>/modelyard.log`` (100 MB each, 30 backups), so every
run of every process has its own folder and a crash can be traced afterwards.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from ..home import home_dir
from .logsafe import EscapingFilter

MAX_BYTES = 100 * 1024 * 1024
BACKUPS = 30
FORMAT = "%(asctime)s %(levelname)-7s %(process)d %(name)s: %(message)s"
# Third-party loggers that write modelyard's story too: uvicorn's error and access logs.
_PROPAGATED = ("uvicorn", "uvicorn.error", "uvicorn.access")


class _Ours:
    """Marks the handlers setup_logging installed, so a second call replaces instead of doubling."""


class _FileHandler(logging.handlers.RotatingFileHandler, _Ours):
    """Rolls over once the file has reached ``maxBytes``, asking the open file its size.

    The standard check formats every record a second time and stats the path twice before writing
    it; with the access log that was a tenth of the server's CPU per small request. A file may end
    one record past ``maxBytes``."""

    def shouldRollover(self, record: logging.LogRecord) -> bool:
        if self.stream is None or self.maxBytes <= 0:
            return False  # nothing written yet (emit opens it), or rotation is off
        return os.fstat(self.stream.fileno()).st_size >= self.maxBytes


class _ConsoleHandler(logging.StreamHandler, _Ours):
    pass


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.upper())
    if not isinstance(value, int):
        raise ValueError(
            f"unknown log level {level!r}; use debug, info, warning, error or critical"
        )
    return value


def log_dir(role: str, started_ms: int | None = None) -> Path:
    started_ms = int(time.time() * 1000) if started_ms is None else started_ms
    return home_dir() / "logs" / f"{role}_{started_ms}"


def setup_logging(role: str, level: str | int = "info", *, console: bool = True) -> Path:
    """Send the root logger to a rotating file (and stderr); return the log file's path.

    ``role`` names the process kind ("server", "runner"); ``level`` is a name or a number."""
    numeric = _level(level)
    path = log_dir(role) / "modelyard.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter(FORMAT)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Ours):
            root.removeHandler(handler)
            handler.close()

    handlers: list[logging.Handler] = [
        _FileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS, encoding="utf-8")
    ]
    if console:
        handlers.append(_ConsoleHandler(sys.stderr))
    for handler in handlers:
        handler.setFormatter(formatter)
        handler.addFilter(EscapingFilter())
        root.addHandler(handler)
    root.setLevel(numeric)
    for name in _PROPAGATED:
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("modelyard").info("%s logging to %s", role, path)
    return path
