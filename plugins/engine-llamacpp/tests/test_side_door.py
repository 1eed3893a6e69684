"""llama.cpp's embedded HTTP server is no side door: no TCP port, a UNIX socket in a private folder,
behind a random key, CORS closed, /slots and /props off; and no parameter can reopen it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import pytest
from modelyard.errors import InvalidRequest
from proc_sockets import listening


def test_the_embedded_server_is_locked(loader: Callable[..., Any]) -> None:
    tcp_before, unix_before = listening()
    model = loader(n_ctx=512, n_parallel=1)
    try:
        tcp, unix = listening()
        assert tcp == tcp_before, "llama.cpp opened a TCP port"
        (sock,) = unix - unix_before
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
            # A guessed key does not help either.
            guessed = http.get("/slots", headers={"authorization": "Bearer guess"})
            assert guessed.status_code == 401
        # The engine itself still serves modelyard, in-process.
        chunks = anyio.run(_chat, model)
        assert chunks
    finally:
        anyio.run(model.close)
    assert not os.path.exists(folder), "closing the model removes the socket folder"


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
