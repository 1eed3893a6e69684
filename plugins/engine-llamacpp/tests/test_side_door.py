"""llama.cpp's embedded HTTP server is no side door: no TCP port, a UNIX socket in a private folder,
behind a random key, CORS closed, /slots and /props off; and no parameter can reopen it."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from modelyard.errors import InvalidRequest
from proc_sockets import listening


def test_the_embedded_server_is_unreachable(loader: Callable[..., Any]) -> None:
    tcp_before, unix_before = listening()
    model = loader(n_ctx=512, n_parallel=1)
    try:
        tcp, unix = listening()
        assert tcp == tcp_before, "llama.cpp opened a TCP port"
        (sock,) = unix - unix_before  # llama.cpp still listens, on a socket nobody can reach:
        assert not os.path.exists(os.path.dirname(sock)), "its folder is gone"
        with socket.socket(socket.AF_UNIX) as client, pytest.raises(FileNotFoundError):
            client.connect(sock)
        # The engine itself still serves modelyard, in-process.
        assert anyio.run(_chat, model)
    finally:
        anyio.run(model.close)


def test_the_embedded_server_is_locked_while_it_has_a_path(
    loader: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Until the folder goes (or if it never could), the socket answers nothing without a key."""
    from modelyard_llamacpp import loader as loading

    monkeypatch.setattr(loading, "unlink_http", lambda folder: None)
    _, unix_before = listening()
    model = loader(n_ctx=512, n_parallel=1)
    try:
        (sock,) = listening()[1] - unix_before
        folder = os.path.dirname(sock)
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        transport = httpx.HTTPTransport(uds=sock)
        with httpx.Client(transport=transport, base_url="http://localhost") as http:
            for method, path in [
                ("GET", "/slots"),
                ("GET", "/props"),
                ("GET", "/metrics"),
                ("GET", "/v1/models"),
                ("POST", "/v1/chat/completions"),
                ("POST", "/completion"),
            ]:
                response = http.request(
                    method,
                    path,
                    json={"messages": [{"role": "user", "content": "hi"}], "prompt": "hi"},
                    headers={"origin": "http://evil.example"},
                )
                assert response.status_code == 401, (path, response.text)
                assert response.headers.get("access-control-allow-origin") in (None, ""), path
            guessed = http.get("/slots", headers={"authorization": "Bearer guess"})
            assert guessed.status_code == 401
    finally:
        anyio.run(model.close)
        shutil.rmtree(folder, ignore_errors=True)


async def _chat(model: Any) -> list[Any]:
    from modelyard.schemas import ChatCompletionRequest, ChatMessage

    request = ChatCompletionRequest(
        model="m", messages=[ChatMessage(role="user", content="Hi")], max_tokens=2
    )
    return [chunk async for chunk in model.chat(request)]


@pytest.mark.parametrize(
    "param",
    [
        {"hostnames": ["0.0.0.0"]},
        {"port": 8080},
        {"api_keys": ["known"]},
        {"cors_origins": "*"},
        {"endpoint_slots": True},
        {"endpoint_props": True},
        {"slot_save_path": "/tmp"},
    ],
)
def test_no_parameter_reopens_it(loader: Callable[..., Any], param: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match=r"llama\.cpp's own HTTP server"):
        loader(n_ctx=512, n_parallel=1, **param)
