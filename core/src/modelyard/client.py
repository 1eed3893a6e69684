"""Python client for a running modelyard server (httpx, synchronous).

Shaped like ``xinference-client``'s ``RESTfulClient`` so that scripts written for it carry over:
``Client(endpoint).launch_model(...)`` → uid, ``get_model(uid)`` → a handle whose ``chat`` /
``generate`` / ``create_embedding`` / ``rerank`` call the OpenAI routes. Every failure is raised as
a ``modelyard.errors`` class carrying the server's message and HTTP status, including a server that
cannot be reached (``Unavailable``), so callers catch one hierarchy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import (
    Conflict,
    ContextLengthExceeded,
    EngineError,
    Forbidden,
    InvalidRequest,
    LaunchError,
    ModelNotFound,
    ModelyardError,
    NotFound,
    Overloaded,
    Unauthorized,
    Unavailable,
    Unsupported,
)

DEFAULT_ENDPOINT = "http://127.0.0.1:9997"

_BY_CODE: dict[str, type[ModelyardError]] = {
    "model_not_found": ModelNotFound,
    "context_length_exceeded": ContextLengthExceeded,
    "unsupported": Unsupported,
    "launch_failed": LaunchError,
}
_BY_TYPE: dict[str, type[ModelyardError]] = {
    "invalid_request_error": InvalidRequest,
    "not_found_error": NotFound,
    "conflict_error": Conflict,
    "rate_limit_error": Overloaded,
    "service_unavailable": Unavailable,
    "engine_error": EngineError,
    "authentication_error": Unauthorized,
    "permission_error": Forbidden,
}
_BY_STATUS: dict[int, type[ModelyardError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    429: Overloaded,
    503: Unavailable,
}


def default_endpoint() -> str:
    return os.environ.get("MODELYARD_ENDPOINT") or DEFAULT_ENDPOINT


def error_from_body(status: int | None, body: Any, fallback: str = "") -> ModelyardError:
    """Rebuild the server's error: OpenAI's ``error`` object first, then Xinference's ``detail``.
    The class comes from the error's code, then its type, then the HTTP status (None: unknown, as
    for an error that arrives mid-stream)."""
    message, code, param, kind = fallback or f"HTTP {status}", None, None, None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = str(error.get("message") or message)
            code, param, kind = error.get("code"), error.get("param"), error.get("type")
        elif isinstance(error, str):
            message = error
        elif body.get("detail") is not None:
            detail = body["detail"]
            message = detail if isinstance(detail, str) else json.dumps(detail)
    cls = (
        _BY_CODE.get(str(code))
        or (_BY_STATUS.get(status) if status is not None else None)
        or _BY_TYPE.get(str(kind))
        or ModelyardError
    )
    err = cls(message, param=param, code=code)
    if status is not None:
        # Keep the status the server really sent (e.g. 401, 422, 502), not only the class default.
        err.status = status
    return err


def _raise_for(response: httpx.Response) -> None:
    if response.status_code == 200:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    text = response.text.strip()[:500]
    retry = response.headers.get("retry-after")
    err = error_from_body(response.status_code, body, text or response.reason_phrase)
    if retry and retry.isdigit():
        err.retry_after = int(retry)
    raise err


def _iter_sse(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """One JSON chunk per ``data:`` line; ``[DONE]`` ends the stream; an ``error`` chunk raises."""
    try:
        for line in response.iter_lines():
            line = line.strip()
            if not line.startswith("data:"):
                continue  # comments (": ping"), event:/id: lines and blank separators
            payload = line[5:].strip()
            if payload == "[DONE]":
                return
            chunk = json.loads(payload)
            if isinstance(chunk, dict) and chunk.get("error") is not None:
                raise error_from_body(None, chunk, "the stream failed")
            yield chunk
    except httpx.TimeoutException:
        raise Unavailable("the stream stalled: no token within the client's timeout") from None
    except httpx.TransportError as exc:
        raise Unavailable(f"the server closed the stream before it ended ({exc})") from None
    finally:  # also when the caller stops early: closing tells the server to cancel the generation
        response.close()


class Client:
    """A connection to one modelyard server. Use as a context manager, or call ``close()``.

    ``api_key`` (default: ``MODELYARD_API_KEY``) goes as ``Authorization: Bearer`` on every call."""

    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        timeout: float | None = 600.0,
        *,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.endpoint = (endpoint or default_endpoint()).rstrip("/")
        api_key = api_key or os.environ.get("MODELYARD_API_KEY") or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        if http_client is None:
            http_client = httpx.Client(base_url=self.endpoint, timeout=timeout)
        http_client.headers.update(headers)
        self._http = http_client

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, stream: bool = False, **kw: Any) -> httpx.Response:
        request = self._http.build_request(method, self.endpoint + path, **kw)
        try:
            response = self._http.send(request, stream=stream)
        except httpx.TimeoutException:
            raise Unavailable(
                f"the modelyard server at {self.endpoint} did not answer {method} {path} in time; "
                "wait and retry, or give the client a longer timeout"
            ) from None
        except httpx.TransportError as exc:
            raise Unavailable(
                f"cannot reach the modelyard server at {self.endpoint} ({exc or type(exc).__name__}); "
                "start it with `modelyard serve` or point --endpoint / MODELYARD_ENDPOINT at it"
            ) from None
        try:
            _raise_for(response)
        except BaseException:
            response.close()
            raise
        return response

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        response = self._send(method, path, **kw)
        return response.json() if response.content else None

    def _post_maybe_stream(
        self, path: str, body: dict[str, Any]
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        if body.get("stream"):
            return _iter_sse(self._send("POST", path, json=body, stream=True))
        result: dict[str, Any] = self._json("POST", path, json=body)
        return result

    # -- lifecycle ---------------------------------------------------------------------------

    def launch_model(
        self,
        model_name: str,
        model_type: str = "LLM",
        model_engine: str | None = None,
        model_uid: str | None = None,
        model_format: str | None = None,
        model_size_in_billions: float | str | None = None,
        quantization: str | None = None,
        wait_ready: bool = True,
        **params: Any,
    ) -> str:
        """Launch a model and return its uid; blocks until it is ready unless ``wait_ready=False``.
        Extra keyword arguments are engine parameters (``n_ctx=4096``, ``**{"sampling.top_k": 20}``)."""
        size: Any = model_size_in_billions
        if isinstance(size, float) and size.is_integer():
            size = int(size)
        body = {
            "model_uid": model_uid,
            "model_name": model_name,
            "model_type": model_type,
            "model_engine": model_engine,
            "model_format": model_format,
            "model_size_in_billions": size,
            "quantization": quantization,
            **params,
        }
        query = {} if wait_ready else {"wait_ready": "false"}
        result = self._json("POST", "/v1/models", json=body, params=query)
        return str(result["model_uid"])

    def cluster_info(self) -> dict[str, Any]:
        """The Ray cluster the server supervises: ``{"ray_address": ...}`` (None: not a cluster)."""
        found: dict[str, Any] = self._json("GET", "/v1/cluster")
        return found

    def get_workers_info(self) -> list[dict[str, Any]]:
        """Each node with its resources, what is free, and its models (Xinference's call)."""
        found: list[dict[str, Any]] = self._json("GET", "/v1/workers")
        return found

    def list_models(self) -> dict[str, dict[str, Any]]:
        """Running models by uid (each the server's description of it)."""
        data = self._json("GET", "/v1/models")["data"]
        return {item["id"]: item for item in data}

    def describe_model(self, model_uid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/models/{model_uid}")
        return result

    def get_model(self, model_uid: str) -> ModelHandle:
        """A handle for the model's abilities, chosen from its description (as xinference-client does)."""
        desc = self.describe_model(model_uid)
        model_type, abilities = desc.get("model_type"), desc.get("model_ability") or []
        if model_type == "LLM":
            if "chat" in abilities:
                return ChatModelHandle(self, model_uid, desc)
            if "generate" in abilities:
                return GenerateModelHandle(self, model_uid, desc)
            raise Unsupported(
                f"model {model_uid!r} can neither chat nor generate (abilities: {abilities})"
            )
        if model_type == "embedding":
            return EmbeddingModelHandle(self, model_uid, desc)
        if model_type == "rerank":
            return RerankModelHandle(self, model_uid, desc)
        raise Unsupported(
            f"model {model_uid!r} has a model_type this client does not know: {model_type!r}"
        )

    def terminate_model(self, model_uid: str) -> None:
        self._send("DELETE", f"/v1/models/{model_uid}").close()

    def scale_model(
        self, model_uid: str, replica: int, drain_timeout: float | None = None
    ) -> dict[str, Any]:
        """Run ``replica`` replicas of the model from now on; the model's description after."""
        body: dict[str, Any] = {"replica": replica}
        if drain_timeout is not None:
            body["drain_timeout"] = drain_timeout
        result: dict[str, Any] = self._json("POST", f"/v1/models/{model_uid}/scale", json=body)
        return result

    def add_model_replica(self, model_uid: str, replica: int = 1) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "POST", f"/v1/models/{model_uid}/replicas", json={"replica": replica}
        )
        return result

    def terminate_model_replica(self, model_uid: str, replica_id: int | str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "DELETE", f"/v1/models/{model_uid}/replicas/{replica_id}"
        )
        return result

    def get_launch_model_progress(self, model_uid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/v1/models/{model_uid}/progress")
        return result

    # -- catalog -----------------------------------------------------------------------------

    def list_model_registrations(
        self, model_type: str = "LLM", detailed: bool = False
    ) -> list[dict[str, Any]]:
        query = {"detailed": "true" if detailed else "false"}
        result: list[dict[str, Any]] = self._json(
            "GET", f"/v1/model_registrations/{model_type}", params=query
        )
        return result

    def get_model_registration(self, model_type: str, model_name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            "GET", f"/v1/model_registrations/{model_type}/{model_name}"
        )
        return result

    def register_model(
        self, model_type: str, model: str | dict[str, Any], persist: bool = True
    ) -> None:
        """Register a custom family: ``model`` is its JSON text or dict (sent as JSON text, as Xinference does)."""
        text = model if isinstance(model, str) else json.dumps(model)
        self._json(
            "POST",
            f"/v1/model_registrations/{model_type}",
            json={"model": text, "persist": persist},
        )

    def unregister_model(self, model_type: str, model_name: str) -> None:
        self._json("DELETE", f"/v1/model_registrations/{model_type}/{model_name}")

    def query_engine_by_model_name(
        self, model_name: str, model_type: str = "LLM"
    ) -> dict[str, Any]:
        """Per engine, the specs it can run here, or the reason it cannot (Xinference's shape)."""
        result: dict[str, Any] = self._json("GET", f"/v1/engines/{model_type}/{model_name}")
        return result


class ModelHandle:
    def __init__(self, client: Client, model_uid: str, description: dict[str, Any]) -> None:
        self.client = client
        self.model_uid = model_uid
        self.description = description

    def _body(
        self, params: dict[str, Any], generate_config: dict[str, Any] | None
    ) -> dict[str, Any]:
        # xinference-client puts generate_config keys at the top level; accept both spellings.
        return {"model": self.model_uid, **(generate_config or {}), **params}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model_uid!r})"


class GenerateModelHandle(ModelHandle):
    def generate(
        self,
        prompt: str,
        stream: bool = False,
        generate_config: dict[str, Any] | None = None,
        **params: Any,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """``/v1/completions``: the response dict, or an iterator of chunks when ``stream=True``."""
        body = {**self._body(params, generate_config), "prompt": prompt}
        body["stream"] = bool(stream or body.get("stream"))
        return self.client._post_maybe_stream("/v1/completions", body)


class ChatModelHandle(GenerateModelHandle):
    def chat(
        self,
        messages: list[dict[str, Any]],
        stream: bool = False,
        generate_config: dict[str, Any] | None = None,
        **params: Any,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """``/v1/chat/completions``: the response dict, or an iterator of chunks when ``stream=True``."""
        body = {**self._body(params, generate_config), "messages": messages}
        body["stream"] = bool(stream or body.get("stream"))
        return self.client._post_maybe_stream("/v1/chat/completions", body)


class EmbeddingModelHandle(ModelHandle):
    def create_embedding(self, input: str | list[str], **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client._json(
            "POST", "/v1/embeddings", json={**self._body(params, None), "input": input}
        )
        return result


class RerankModelHandle(ModelHandle):
    def rerank(
        self,
        documents: list[str],
        query: str,
        top_n: int | None = None,
        return_documents: bool | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        body = {**self._body(params, None), "documents": documents, "query": query}
        body.update(
            {
                k: v
                for k, v in (("top_n", top_n), ("return_documents", return_documents))
                if v is not None
            }
        )
        result: dict[str, Any] = self.client._json("POST", "/v1/rerank", json=body)
        return result
