"""A tiny stand-in for the modelyard server: the routes and shapes the client and CLI use.

Logic tests only (request building, response and error parsing, SSE streaming, CLI output): the
real server and engines are exercised end to end in tests/. Served by a real uvicorn on an
ephemeral port of 127.0.0.1, so the client's HTTP and streaming paths are real. No tests here;
test_client.py and test_cli_lifecycle.py load it by path (they have no package to import from).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_LAUNCH_KEYS = {"model_uid", "model_name", "model_type", "model_engine", "model_format",
                "model_size_in_billions", "quantization"}  # fmt: skip
_ABILITIES = {"LLM": ["chat", "generate"], "embedding": ["embed"], "rerank": ["rerank"]}


def error(
    status: int, message: str, code: str | None = None, kind: str = "invalid_request_error"
) -> JSONResponse:
    body = {
        "error": {"message": message, "type": kind, "param": None, "code": code},
        "detail": message,
    }
    return JSONResponse(body, status_code=status)


class Stub:
    """The server's state, inspectable by tests: running models, registrations, recorded requests."""

    def __init__(self) -> None:
        self.models: dict[str, dict[str, Any]] = {}
        self.registered: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, Any, dict[str, str]]] = []

    def record(self, request: Request, body: Any) -> None:
        self.requests.append((request.method, request.url.path, body, dict(request.query_params)))

    def last(self, path: str) -> tuple[Any, dict[str, str]]:
        for _, seen, body, query in reversed(self.requests):
            if seen == path:
                return body, query
        raise AssertionError(f"no request to {path}")

    async def launch(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        if not body.get("model_name"):
            return error(400, "Specify the `model_name` field.")
        if body["model_name"] == "nope":
            return error(
                400, "model 'nope' is not in the catalog; close matches: none", "launch_failed"
            )
        uid = body.get("model_uid") or body["model_name"]
        if uid in self.models:
            return error(409, f"model uid {uid!r} is already in use", kind="conflict_error")
        model_type = body.get("model_type") or "LLM"
        abilities = ["generate"] if body["model_name"] == "base-only" else _ABILITIES[model_type]
        self.models[uid] = {
            "model_type": model_type,
            "model_name": body["model_name"],
            "model_engine": body.get("model_engine") or "stub-engine",
            "model_format": body.get("model_format") or "ggufv2",
            "model_size_in_billions": body.get("model_size_in_billions") or 1,
            "quantization": body.get("quantization") or "Q4_0",
            "model_ability": abilities,
            "state": "ready",
            "params": {k: v for k, v in body.items() if k not in _LAUNCH_KEYS},
            "engine_reason": "Chosen engine: stub-engine\nCan run it (best first): stub-engine",
        }
        return JSONResponse({"model_uid": uid})

    async def progress(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        self.record(request, None)
        if uid not in self.models:
            return error(404, f"model uid {uid!r} is not running", "model_not_found")
        return JSONResponse({"uid": uid, "state": "ready", "progress": 1.0, "error": None})

    async def list_models(self, request: Request) -> Response:
        data = [
            {"id": uid, "object": "model", "created": 0, "owned_by": "modelyard", **d}
            for uid, d in self.models.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        uid = request.path_params["uid"]
        self.record(request, None)
        if uid not in self.models:
            return error(
                404, f"model uid {uid!r} is not running", "model_not_found", "not_found_error"
            )
        if request.method == "DELETE":
            del self.models[uid]
            return JSONResponse({"id": uid, "object": "model", "deleted": True})
        return JSONResponse({"id": uid, "object": "model", **self.models[uid]})

    async def chat(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        if body["model"] not in self.models:
            return error(
                404,
                f"model uid {body['model']!r} is not running",
                "model_not_found",
                "not_found_error",
            )
        last = body["messages"][-1]["content"]
        reply = f"reply {len(body['messages'])} to {last}"
        if not body.get("stream"):
            message = {"role": "assistant", "content": reply}
            return JSONResponse(
                {
                    "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                }
            )
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": None}]
        words = reply.split(" ")
        deltas += [{"content": token} for token in [words[0], *(" " + w for w in words[1:])]]
        return self.sse(
            [{"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas],
            last == "boom",
        )

    async def complete(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        pieces = [body["prompt"], " and", " so", " on"]
        if not body.get("stream"):
            return JSONResponse(
                {"choices": [{"index": 0, "text": "".join(pieces[1:]), "finish_reason": "length"}]}
            )
        return self.sse(
            [{"choices": [{"index": 0, "text": p, "finish_reason": None}]} for p in pieces[1:]],
            False,
        )

    def sse(self, chunks: list[dict[str, Any]], fail: bool) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            yield ": ping\n\n"
            for chunk in chunks:
                yield f"data: {json.dumps(chunk)}\n\n"
                if fail:
                    yield 'data: {"error": {"message": "the engine ran out of memory", "type": "engine_error"}}\n\n'
                    return
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text)), 1.0]}
            for i, text in enumerate(inputs)
        ]
        return JSONResponse({"object": "list", "data": data, "model": body["model"]})

    async def rerank(self, request: Request) -> Response:
        body = await request.json()
        self.record(request, body)
        words = set(body["query"].split())
        scored = [
            (len(words & set(doc.split())), i, doc) for i, doc in enumerate(body["documents"])
        ]
        scored.sort(key=lambda item: (-item[0], item[1]))
        results = [
            {
                "index": i,
                "relevance_score": float(score),
                "document": {"text": doc} if body.get("return_documents") else None,
            }
            for score, i, doc in scored[: body.get("top_n") or len(scored)]
        ]
        return JSONResponse({"id": "rerank-1", "results": results})

    async def registrations(self, request: Request) -> Response:
        model_type = request.path_params["model_type"]
        if request.method == "POST":
            body = await request.json()
            self.record(request, body)
            family = json.loads(body["model"])
            self.registered[family["model_name"]] = {
                **family,
                "model_type": model_type,
                "persist": body["persist"],
            }
            return JSONResponse(None)
        self.record(request, None)
        detailed = request.query_params.get("detailed") == "true"
        rows = [
            f if detailed else {"model_name": n, "is_builtin": False}
            for n, f in self.registered.items()
        ]
        return JSONResponse([{"model_name": "builtin-llm", "is_builtin": True}, *rows])

    async def registration(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.record(request, None)
        if request.method == "DELETE":
            self.registered.pop(name, None)
            return JSONResponse(None)
        if name not in self.registered:
            return error(
                404, f"model {name!r} is not registered", "model_not_found", "not_found_error"
            )
        return JSONResponse(self.registered[name])

    async def engines(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.record(request, None)
        return JSONResponse(
            {
                "llama.cpp": [{"model_name": name, "model_format": "ggufv2"}],
                "vLLM": "no CUDA device",
            }
        )

    async def teapot(self, request: Request) -> Response:
        return Response("short and stout", status_code=418)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.launch, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/models/{uid}", self.model, methods=["GET", "DELETE"]),
                Route("/v1/models/{uid}/progress", self.progress, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/completions", self.complete, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/rerank", self.rerank, methods=["POST"]),
                Route(
                    "/v1/model_registrations/{model_type}",
                    self.registrations,
                    methods=["GET", "POST"],
                ),
                Route(
                    "/v1/model_registrations/{model_type}/{name}",
                    self.registration,
                    methods=["GET", "DELETE"],
                ),
                Route("/v1/engines/{model_type}/{name}", self.engines, methods=["GET"]),
                Route("/teapot", self.teapot),
            ]
        )


@contextmanager
def serving(stub: Stub) -> Iterator[str]:
    """Run the stub on 127.0.0.1 (ephemeral port) in a thread; yield its URL; stop it after."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(stub.app(), log_level="warning", lifespan="off", ws="none", http="h11")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the stub server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
