"""Debian's Chromium driven by Playwright, headless (never `playwright install`: it downloads a
browser of its own). Shared by the web UI's tests and ``scripts/ui-screenshots``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("MODELYARD_CHROMIUM", "/usr/bin/chromium"))
# No sandbox (root in a container), no GPU, and nothing that phones home: the machine is offline.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "needs the playwright package (scripts/test installs the test group)"
    if not CHROMIUM.exists():
        return f"needs Chromium at {CHROMIUM} (scripts/test installs Debian's `chromium`)"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
