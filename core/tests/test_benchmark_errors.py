"""`modelyard bench` against a server that drops its connections mid-run: one error, no tree."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from modelyard import benchmark
from modelyard.errors import InvalidRequest

MODELS = b'{"object":"list","data":[{"id":"m"}]}'


@pytest.fixture
def dropping_server() -> Iterator[str]:
    """Answers GET /v1/models, then closes every other connection without a reply."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                request = conn.recv(65536)
                if request.startswith(b"GET /v1/models"):
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                        + f"content-length: {len(MODELS)}\r\nconnection: close\r\n\r\n".encode()
                        + MODELS
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    listener.close()


def test_a_connection_dropped_mid_run_is_one_error_naming_the_server(dropping_server: str) -> None:
    target = benchmark.Target(dropping_server, "m")
    with pytest.raises(InvalidRequest, match="stopped answering during the run"):
        benchmark.run([target], [2], requests=2, max_tokens=4, rounds=1)
