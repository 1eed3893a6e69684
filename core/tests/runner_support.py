"""Shared by the runner tests: the environment that makes a runner load the small test engine."""

from __future__ import annotations

import os
from pathlib import Path

TESTS = Path(__file__).parent


def runner_env() -> dict[str, str]:
    """Runner environment: only test_runner_engine (beside this file) is loaded as a plugin."""
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return {
        "PYTHONPATH": path,
        "MODELYARD_PLUGIN_MODULES": "test_runner_engine",
        "MODELYARD_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
