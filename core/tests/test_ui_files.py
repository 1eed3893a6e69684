"""The web UI's files at /ui: served from the package with a strict Content-Security-Policy, only
the files of its own folder, open without an API key while the API behind it is not."""

from __future__ import annotations

import re

import pytest
import server_support as S
from modelyard.keys import Keys
from modelyard.server import ui
from modelyard.server.security import Security

pytestmark = pytest.mark.anyio
KEY = "ui-unit-test-key"


async def test_the_page_and_its_modules_are_served_with_a_strict_policy() -> None:
    app, _ = S.app_with()
    async with S.asgi_client(app) as http:
        page = await http.get("/ui")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp and "connect-src 'self'" in csp
        assert page.headers["x-content-type-options"] == "nosniff"
        # Every script and stylesheet the page names is served, from this server only.
        assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
        assert "/ui/app.js" in assets and "/ui/style.css" in assets
        for path in assets:
            assert path.startswith("/ui/"), path
            answer = await http.get(path)
            assert answer.status_code == 200, path
        module = await http.get("/ui/app.js")
        assert module.headers["content-type"].startswith("text/javascript")


async def test_every_module_the_app_imports_exists() -> None:
    names = set(ui.ui_files())
    for name in names:
        if name.endswith(".js"):
            text = ui.ui_files()[name].read_text()
            for imported in re.findall(r'from "\./([\w.-]+)"', text):
                assert imported in names, f"{name} imports a missing {imported}"
            # No module reaches for the network beyond this server.
            assert "http://" not in text and "https://" not in text, name


@pytest.mark.parametrize("path", ["/ui/nope.js", "/ui/..%2Fserver%2Fui.py", "/ui/%2e%2e"])
async def test_only_the_folders_own_files_are_served(path: str) -> None:
    app, _ = S.app_with()
    async with S.asgi_client(app) as http:
        answer = await http.get(path)
        assert answer.status_code == 404
        assert (
            "the UI is at /ui" in answer.json()["detail"] or "no route" in answer.json()["detail"]
        )


async def test_the_ui_is_open_but_the_api_behind_it_asks_for_the_key() -> None:
    app, _ = S.app_with(security=Security(keys=Keys([KEY])))
    async with S.asgi_client(app) as http:
        assert (await http.get("/ui")).status_code == 200
        assert (await http.get("/ui/api.js")).status_code == 200
        refused = await http.get("/v1/models")
        assert refused.status_code == 401
        allowed = await http.get("/v1/models", headers={"authorization": f"Bearer {KEY}"})
        assert allowed.status_code == 200
        # The page's own requests pass the Host/Origin guard: same origin, JSON bodies.
        same_origin = await http.post(
            "/v1/models",
            json={"model_name": "toy-chat"},
            headers={"authorization": f"Bearer {KEY}", "origin": "http://127.0.0.1"},
        )
        assert same_origin.status_code == 200
