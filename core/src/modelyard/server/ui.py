"""``GET /ui``: the web UI, plain files shipped in the package (``modelyard/ui/``).

No build step and nothing from the network: an HTML page, ES modules and a stylesheet, served
from one flat folder whose file names are read once (no path from the client reaches the file
system). The Content-Security-Policy lets the page run only its own scripts and talk only to this
server; the pages are open without an API key (they hold no data: the app asks for the key and
sends it with each API call).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ..errors import NotFound

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
UI_PREFIX = "/ui"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    # The files change with the installed version only; a reload should still see a new one.
    "cache-control": "no-cache",
}


@cache
def ui_files() -> dict[str, Path]:
    """The servable files by name: the folder's files with a known type."""
    if not UI_DIR.is_dir():
        return {}
    return {p.name: p for p in UI_DIR.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES}


def _file(name: str) -> Response:
    path = ui_files().get(name)
    if path is None:
        raise NotFound(f"no web UI file {name!r}; the UI is at {UI_PREFIX}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


async def ui_page(request: Request) -> Response:
    return _file("index.html")


async def ui_asset(request: Request) -> Response:
    return _file(request.path_params["name"])
