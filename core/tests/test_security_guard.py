"""No cross-site use, over real HTTP: JSON bodies only, Host names checked, CORS only when asked.
Also the start-up warning and the ``Host`` defaults for each kind of bind address."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import server_support as S
from modelyard.keys import Keys
from modelyard.server.guard import host_name, is_json
from modelyard.server.security import Security, allowed_hosts_for
from modelyard.server.serve import warn_if_exposed

CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, Any]]:
    app, manager = S.app_with()
    manager.add("m")
    with S.running_server(app) as url:
        yield url, manager


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
@pytest.mark.parametrize(
    "path", ["/v1/chat/completions", "/v1/models", "/v1/model_registrations/LLM"]
)
def test_bodies_that_are_not_json_are_415(
    served: tuple[str, Any], path: str, content_type: str | None
) -> None:
    url, manager = served
    launches = len(manager.launches)
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(f"{url}{path}", content=CHAT, headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["detail"]
    assert len(manager.launches) == launches


def test_json_content_types_pass(served: tuple[str, Any]) -> None:
    url, _ = served
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.x+json",
    ):
        response = httpx.post(
            f"{url}/v1/chat/completions", content=CHAT, headers={"content-type": content_type}
        )
        assert response.status_code == 200, (content_type, response.text)
    # A POST without a body (xinference-client's cancel) needs no Content-Type.
    assert httpx.post(f"{url}/v1/models/m/cancel").status_code == 400  # ready: not launching


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST:1234", "127.0.0.1:9"]
)
def test_loopback_host_names_pass(served: tuple[str, Any], host: str) -> None:
    url, _ = served
    assert httpx.get(f"{url}/v1/models", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:9997", "127.0.0.1.nip.io", "10.0.0.5"]
)
def test_a_foreign_host_is_refused(served: tuple[str, Any], host: str) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: nothing answers it."""
    url, _ = served
    response = httpx.get(f"{url}/v1/models", headers={"host": host})
    assert response.status_code == 400
    assert "--allowed-host" in response.json()["detail"]


def test_cross_origin_requests_are_refused_and_cors_is_off(served: tuple[str, Any]) -> None:
    url, manager = served
    launches = len(manager.launches)
    evil = {"origin": "http://evil.example", "content-type": "application/json"}
    response = httpx.post(f"{url}/v1/models", content=b'{"model_name": "toy-chat"}', headers=evil)
    assert response.status_code == 403 and "--cors-origin" in response.json()["detail"]
    assert len(manager.launches) == launches
    preflight = httpx.options(
        f"{url}/v1/chat/completions",
        headers={"origin": "http://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    # The server's own pages (same origin) are not cross-origin.
    same = httpx.get(f"{url}/v1/models", headers={"origin": url})
    assert same.status_code == 200


def test_cors_origin_lets_that_page_in() -> None:
    app, manager = S.app_with(
        security=Security(keys=Keys(["k"]), cors_origins=("http://app.example",))
    )
    manager.add("m")
    with S.running_server(app) as url:
        preflight = httpx.options(
            f"{url}/v1/chat/completions",
            headers={
                "origin": "http://app.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://app.example"
        response = httpx.post(
            f"{url}/v1/chat/completions",
            content=CHAT,
            headers={
                "origin": "http://app.example",
                "content-type": "application/json",
                "authorization": "Bearer k",
            },
        )
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "http://app.example"
        other = httpx.get(
            f"{url}/v1/models", headers={"origin": "http://evil.example", "x-api-key": "k"}
        )
        assert other.status_code == 403


def test_allowed_hosts_follow_the_bind_address() -> None:
    assert set(allowed_hosts_for("127.0.0.1")) == {"localhost", "127.0.0.1", "[::1]", "::1"}
    assert "192.168.1.5" in allowed_hosts_for("192.168.1.5")
    assert allowed_hosts_for("0.0.0.0") == ("*",)
    assert "box.lan" in allowed_hosts_for("0.0.0.0", ["box.lan"])
    assert "*" not in allowed_hosts_for("0.0.0.0", ["box.lan"])
    assert host_name("[::1]:80") == "[::1]" and host_name("Example.COM:1") == "example.com"
    assert is_json("application/problem+json") and not is_json("text/json+x")


def test_binding_beyond_loopback_without_keys_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, "modelyard.server"):
        warn_if_exposed("127.0.0.1", Security())
        assert not caplog.records
        warn_if_exposed("0.0.0.0", Security(allowed_hosts=("*",)))
    assert "WITHOUT API KEYS" in caplog.text and "--allowed-host" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, "modelyard.server"):
        warn_if_exposed("192.168.1.5", Security(keys=Keys(["k"]), allowed_hosts=("192.168.1.5",)))
    assert not caplog.records


def test_serve_options_build_the_security_settings(tmp_path: Any, monkeypatch: Any) -> None:
    from click.testing import CliRunner
    from modelyard.cli import main

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    helped = CliRunner().invoke(main, ["serve", "--help"])
    for option in ("--api-key", "--allowed-host", "--cors-origin", "--model-root",
                   "--allow-remote-code", "--metrics-open"):  # fmt: skip
        assert option in helped.output, option
    security = Security.from_options(
        host="0.0.0.0",
        api_keys=["a:inference"],
        allowed_hosts=["Box.LAN"],
        cors_origins=["https://app.example/"],
        model_roots=[str(tmp_path / "m")],
        metrics_open=True,
        env={"MODELYARD_API_KEYS": "b, c:manage"},
    )
    assert security.allowed_hosts[0] == "box.lan" and "*" not in security.allowed_hosts
    assert security.cors_origins == ("https://app.example",)
    assert security.roots() == ((tmp_path / "m").resolve(),)
    assert security.metrics_open and not security.allow_remote_code
    assert security.keys.check("a") is not None
    assert security.keys.check("a").scopes == {"inference"}  # type: ignore[union-attr]
    assert security.keys.check("b").scopes == {"inference", "manage", "admin"}  # type: ignore[union-attr]
    assert security.keys.check("c").scopes == {"manage"}  # type: ignore[union-attr]
    assert security.keys.check("d") is None
    # No --model-root: MODELYARD_HOME/models and the hub caches.
    assert Security.from_options(env={}).roots()[0] == (tmp_path / "models").resolve()
