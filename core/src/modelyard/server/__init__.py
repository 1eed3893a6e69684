"""The HTTP server: OpenAI-compatible inference routes and Xinference-shaped management routes."""

from __future__ import annotations

from .app import create_app
from .logs import setup_logging
from .serve import serve

__all__ = ["create_app", "serve", "setup_logging"]
