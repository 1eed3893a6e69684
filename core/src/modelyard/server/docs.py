"""``GET /docs``: ``/openapi.json`` rendered by Swagger UI, entirely offline.

Swagger UI's files come from the installed ``swagger-ui-bundle-v2`` package and are served under
``/docs/assets/`` (only the few the page needs: no path from the client reaches the file system);
the page's Content-Security-Policy lets the browser load nothing from anywhere else. Should the
package be missing, the page is a plain HTML list of the routes built from the same description.
"""

from __future__ import annotations

import html
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from ..errors import NotFound

ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
    "favicon-32x32.png": "image/png",
}
# Inline script and styles are the page's own; everything else must come from this server.
CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'"
)

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>modelyard API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script src="/docs/assets/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      validatorUrl: null,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: "StandaloneLayout"
    });
  </script>
</body>
</html>
"""


def assets_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def _plain_page(request: Request) -> str:
    from .openapi import build

    rows = []
    for path, methods in build(request.app.routes)["paths"].items():
        for method, op in methods.items():
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td></tr>"
            )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>modelyard API</title></head>"
        "<body><h1>modelyard API</h1><p>The full description is at "
        "<a href='/openapi.json'>/openapi.json</a> (install swagger-ui-bundle-v2 to browse it "
        f"here).</p><table>{''.join(rows)}</table></body></html>"
    )


async def docs_page(request: Request) -> Response:
    page = PAGE if assets_dir() is not None else _plain_page(request)
    return HTMLResponse(page, headers={"content-security-policy": CSP})


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    folder = assets_dir()
    if name not in ASSETS or folder is None:
        raise NotFound(f"no documentation asset {name!r}")
    headers = {"cache-control": "public, max-age=86400"}
    return FileResponse(folder / name, media_type=ASSETS[name], headers=headers)
