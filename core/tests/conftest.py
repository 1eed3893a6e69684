"""Fixtures shared by the core's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # The server and runner run on asyncio (uvicorn); test them on the same loop.
    return "asyncio"
