"""Shared fixtures: the real small models, and one event loop per test module for a loaded engine.

vLLM's async engine binds to the event loop that first uses it, so each module that loads a model
runs its coroutines through one blocking portal (a loop in a thread), as the runner does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

REPO = Path(__file__).resolve().parents[3]


def models_dir() -> Path:
    return Path(os.environ.get("MODELYARD_TEST_MODELS") or REPO / ".models")


def model_path(name: str) -> Path:
    path = models_dir() / name
    if not (path / "config.json").is_file():
        pytest.skip(
            f"{path} is missing; build it with `python scripts/prepare_models.py` (test.sh does)"
        )
    return path


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    return model_path("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return model_path("all-minilm-l6-v2")


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as running:
        yield running
