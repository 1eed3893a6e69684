"""API keys and scopes, over real HTTP (uvicorn on 127.0.0.1, fake manager behind it), with the
clients people use: modelyard's Client, xinference-client, the openai SDK, and plain headers."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import server_support as S
from modelyard.client import Client
from modelyard.errors import Forbidden, Unauthorized
from modelyard.keys import Keys, KeyStore
from modelyard.server.security import Security
from xinference_client import RESTfulClient

FULL = "full-key-0123456789"
INFER = "infer-key-0123456789"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> KeyStore:
    return KeyStore(tmp_path_factory.mktemp("keys") / "keys.json")


@pytest.fixture(scope="module")
def served(store: KeyStore) -> Iterator[tuple[str, Any]]:
    keys = Keys([FULL, f"{INFER}:inference"], store)
    app, manager = S.app_with(security=Security(keys=keys))
    manager.add("m")
    with S.running_server(app) as url:
        yield url, manager


def test_without_a_key_only_health_and_cluster_auth_answer(served: tuple[str, Any]) -> None:
    url, _ = served
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{url}/v1/cluster/auth").json() == {"auth": True}
    for method, path in [
        ("GET", "/status"),
        ("GET", "/v1/models"),
        ("GET", "/metrics"),
        ("GET", "/no/such/route"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/models"),
        ("GET", "/v1/keys"),
    ]:
        response = httpx.request(method, f"{url}{path}", json={})
        assert response.status_code == 401, (path, response.text)
        assert response.headers["www-authenticate"] == 'Bearer realm="modelyard"'
        assert "Authorization: Bearer" in response.json()["detail"]


def test_a_wrong_key_is_401_and_never_logged(
    served: tuple[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = served
    with caplog.at_level(logging.WARNING, "modelyard.server"):
        for headers in (
            {"authorization": "Bearer not-a-key"},
            {"x-api-key": "not-a-key"},
            {"authorization": f"Basic {FULL}"},
        ):
            response = httpx.get(f"{url}/v1/models", headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["error"]["type"] == "authentication_error"
    challenge = httpx.get(f"{url}/v1/models", headers={"x-api-key": "bad"}).headers
    assert challenge["www-authenticate"] == 'Bearer realm="modelyard", error="invalid_token"'
    assert "not-a-key" not in caplog.text and "refused GET /v1/models" in caplog.text


def test_bearer_and_x_api_key_both_work(served: tuple[str, Any]) -> None:
    url, _ = served
    for headers in ({"authorization": f"Bearer {FULL}"}, {"x-api-key": FULL}):
        assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 200


def test_a_key_without_the_scope_is_403(served: tuple[str, Any]) -> None:
    url, _ = served
    headers = {"authorization": f"Bearer {INFER}"}
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=headers).status_code == 200
    assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 200
    for method, path in [
        ("POST", "/v1/models"),
        ("DELETE", "/v1/models/m"),
        ("POST", "/v1/model_registrations/LLM"),
        ("GET", "/v1/keys"),
        ("GET", "/v1/models/m/logs"),  # engines may log prompts: operators only
    ]:
        response = httpx.request(method, f"{url}{path}", json={}, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert "--scope" in response.json()["detail"]


def test_store_keys_work_and_revocation_needs_no_restart(
    served: tuple[str, Any], store: KeyStore
) -> None:
    url, _ = served
    # An admin key makes a manage key through the API; the CLI edits the same store.
    admin = {"x-api-key": FULL}
    made = httpx.post(f"{url}/v1/keys", json={"scopes": ["manage"], "name": "ci"}, headers=admin)
    assert made.status_code == 200, made.text
    key, key_id = made.json()["key"], made.json()["id"]
    assert key.startswith(f"my-{key_id}-") and "sha256" not in made.json()
    assert key not in store.path.read_text()  # only the hash is kept
    assert oct(store.path.stat().st_mode & 0o777) == "0o600"
    headers = {"authorization": f"Bearer {key}"}
    launch = {"model_name": "toy-chat", "model_uid": "by-key"}
    assert httpx.post(f"{url}/v1/models", json=launch, headers=headers).status_code == 200
    chat = {"model": "by-key", "messages": [{"role": "user", "content": "hi"}]}
    assert httpx.post(f"{url}/v1/chat/completions", json=chat, headers=headers).status_code == 403
    listed = httpx.get(f"{url}/v1/keys", headers=admin).json()["data"]
    assert [k["id"] for k in listed] == [key_id] and "sha256" not in listed[0]
    KeyStore(store.path).revoke(key_id)  # as `modelyard keys revoke` does, from another process
    assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 401
    assert httpx.delete(f"{url}/v1/keys/nope", headers=admin).status_code == 404


def test_modelyard_client_with_and_without_a_key(
    served: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, _ = served
    with Client(url, api_key=FULL) as client:
        assert "m" in client.list_models()
    monkeypatch.setenv("MODELYARD_API_KEY", FULL)
    with Client(url) as client:
        assert "m" in client.list_models()
    monkeypatch.delenv("MODELYARD_API_KEY")
    with Client(url) as client, pytest.raises(Unauthorized) as missing:
        client.list_models()
    assert missing.value.status == 401
    with Client(url, api_key=INFER) as client, pytest.raises(Forbidden):
        client.launch_model("toy-chat", model_uid="nope")


def test_xinference_client_sends_its_key_when_auth_is_on(served: tuple[str, Any]) -> None:
    url, _ = served
    client = RESTfulClient(url, api_key=FULL)
    try:
        assert "m" in client.list_models()
        reply = client.get_model("m").chat(messages=[{"role": "user", "content": "hi"}])
        assert reply["choices"][0]["message"]["content"] == "Hello there!"
    finally:
        client.close()
    keyless = RESTfulClient(url)
    try:
        with pytest.raises(RuntimeError, match="API key"):
            keyless.list_models()
    finally:
        keyless.close()


def test_openai_sdk_with_a_key(served: tuple[str, Any]) -> None:
    url, _ = served
    with openai.OpenAI(base_url=f"{url}/v1", api_key=INFER, max_retries=0) as sdk:
        reply = sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert reply.choices[0].message.content == "Hello there!"
    wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_anthropic_sdk_sends_x_api_key(served: tuple[str, Any]) -> None:
    anthropic = pytest.importorskip("anthropic", reason="the anthropic SDK is not installed")
    url, _ = served
    message = {"role": "user", "content": "hi"}
    wrong = anthropic.Anthropic(base_url=url, api_key="wrong", max_retries=0)
    with wrong, pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="m", max_tokens=4, messages=[message])
    for key in (FULL, INFER):  # an inference key is enough
        sdk = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
        # Past the key check; NotFound where the Messages route is not on this server.
        with sdk, contextlib.suppress(anthropic.NotFoundError):
            sdk.messages.create(model="m", max_tokens=4, messages=[message])


def test_metrics_open_by_option(tmp_path: Path) -> None:
    app, _ = S.app_with(security=Security(keys=Keys([FULL]), metrics_open=True))
    with S.running_server(app) as url:
        assert httpx.get(f"{url}/metrics").status_code == 200
        assert httpx.get(f"{url}/status").status_code == 401


def test_no_keys_means_auth_off_and_a_revoked_store_stays_locked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    keys = Keys([], store)
    assert not keys.enabled()
    _, record = store.create(["inference"])
    assert keys.enabled()
    store.revoke(record.id)
    assert keys.enabled(), "revoking the last key must not open the server"


def test_keys_cli_create_list_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner
    from modelyard.cli import main

    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    runner = CliRunner()
    made = runner.invoke(main, ["keys", "create", "--scope", "manage", "--name", "ops"])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[0]
    assert key.startswith("my-")
    listed = runner.invoke(main, ["keys", "list", "--json"])
    (record,) = json.loads(listed.stdout)
    assert record["scopes"] == ["manage"] and record["name"] == "ops" and "sha256" not in record
    assert Keys([], KeyStore(tmp_path / "keys.json")).check(key) is not None
    revoked = runner.invoke(main, ["keys", "revoke", key])  # the key itself names its id
    assert revoked.exit_code == 0 and record["id"] in revoked.stdout
    assert Keys([], KeyStore(tmp_path / "keys.json")).check(key) is None
    unknown = runner.invoke(main, ["keys", "revoke", "nope"])
    assert unknown.exit_code == 1 and "no API key with id 'nope'" in unknown.output
    bad = runner.invoke(main, ["keys", "create", "--scope", "root"])
    assert bad.exit_code == 2


def test_an_unreadable_key_store_locks_the_server(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    store.path.write_text("{not json")
    app, _ = S.app_with(security=Security(keys=Keys([], store)))
    with S.running_server(app) as url:
        for path in ("/v1/models", "/v1/cluster/auth"):
            response = httpx.get(f"{url}{path}", headers={"x-api-key": "anything"})
            assert response.status_code == 500, (path, response.text)
            assert "key store" in response.json()["detail"]
        assert httpx.get(f"{url}/health").status_code == 200


def test_every_route_that_acts_needs_a_scope() -> None:
    """A new POST or DELETE route must be placed in a scope (auth.required_scope), not left to
    'any valid key'."""
    from modelyard.server.app import ROUTES
    from modelyard.server.auth import required_scope

    for route in ROUTES:
        for method in route.methods or ():
            if method in ("GET", "HEAD"):
                continue
            path = route.path.replace("{", "").replace("}", "")
            assert required_scope(method, path) is not None, (method, route.path)
