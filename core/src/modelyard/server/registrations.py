"""Catalog routes: custom model registrations and the per-engine table of what can run here.

Shapes follow Xinference (XINFERENCE_API.md §6): listings are lists of ``{model_name,
is_builtin}`` (full family dicts with ``?detailed=true``), register/unregister answer ``null``.
A registration file that could not be loaded is listed as ``{model_name, is_builtin: false,
broken: true, error}``; unregistering its name deletes it.
Unlike Xinference, unregistering an unknown or built-in name is an error (404/409), and an unknown
name on /v1/engines is a 404 listing close matches rather than a 200 ``null``.
"""

from __future__ import annotations

from typing import Any, cast

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ..errors import InvalidRequest
from ..schemas import check_json_ints
from ..specs import ModelType
from .errors import JSONResponse, decode_body
from .launch import query_int
from .policy import check_packages, check_registration, security_of

MODEL_TYPES: dict[str, ModelType] = {"llm": "LLM", "embedding": "embedding", "rerank": "rerank"}


class RegistrationBody(msgspec.Struct):
    """xinference-client's POST body: the family as a JSON *string*; a dict is accepted too."""

    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


_registration = msgspec.json.Decoder(RegistrationBody)


def _model_type(raw: str) -> ModelType:
    found = MODEL_TYPES.get(raw.lower())
    if found is None:
        raise InvalidRequest(
            f"Unsupported model type: {raw}; modelyard serves {', '.join(MODEL_TYPES.values())}",
            param="model_type",
        )
    return found


def _flag(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    text = raw.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise InvalidRequest(f"{name} must be true or false, got {raw!r}", param=name)


async def _catalog(request: Request) -> Any:
    catalog = getattr(request.app.state, "catalog", None)
    if catalog is not None:
        return catalog
    from ..catalog import get_catalog

    # The first call reads the data files and asks the plugins: keep it off the event loop.
    return await anyio.to_thread.run_sync(get_catalog)


def _to_registration(family: Any, is_builtin: bool) -> dict[str, Any]:
    from ..catalog import family_to_registration

    return family_to_registration(family, is_builtin)


async def list_registrations(request: Request) -> Response:
    model_type = _model_type(request.path_params["model_type"])
    detailed = _flag(request, "detailed")
    catalog = await _catalog(request)
    items = []
    for family in catalog.families(model_type):
        builtin = catalog.is_builtin(family.model_name)
        items.append(
            _to_registration(family, builtin)
            if detailed
            else {"model_name": family.model_name, "is_builtin": builtin}
        )
    # Files skipped at load: listed so that their owner sees why the model is missing.
    for broken in catalog.broken(model_type):
        items.append(
            {
                "model_name": broken.model_name,
                "is_builtin": False,
                "broken": True,
                "error": broken.error,
            }
        )
    return JSONResponse(items)


async def get_registration(request: Request) -> Response:
    model_type = _model_type(request.path_params["model_type"])
    catalog = await _catalog(request)
    family = catalog.get(request.path_params["model_name"], model_type)
    return JSONResponse(_to_registration(family, catalog.is_builtin(family.model_name)))


async def register_model(request: Request) -> Response:
    from ..catalog import family_from_registration, parse_registration

    model_type = _model_type(request.path_params["model_type"])
    body = await decode_body(request, _registration, "registration body")
    data: Any = body.model
    if isinstance(data, str):
        try:
            data = msgspec.json.decode(data)
        except msgspec.DecodeError:
            data = None  # parse_registration names the JSON error
    # Paths are checked before the parser looks at them (it reads local weights' sizes).
    await anyio.to_thread.run_sync(check_registration, data, security_of(request))
    if isinstance(body.model, str):
        family = parse_registration(body.model, model_type)
    else:
        family = family_from_registration(body.model, model_type)
    try:
        check_json_ints(msgspec.to_builtins(family), "model")
    except ValueError as exc:
        raise InvalidRequest(f"invalid registration: {exc}") from None
    check_packages(family, security_of(request))
    catalog = await _catalog(request)
    # Persisting writes a file (fsync): off the event loop.
    await anyio.to_thread.run_sync(lambda: catalog.register(family, persist=body.persist))
    return JSONResponse(None)


async def unregister_model(request: Request) -> Response:
    model_type = _model_type(request.path_params["model_type"])
    catalog = await _catalog(request)
    name = request.path_params["model_name"]
    await anyio.to_thread.run_sync(lambda: catalog.unregister(model_type, name))
    return JSONResponse(None)


def _plugins_and_hardware(request: Request) -> tuple[Any, Any]:
    """The app's plugin manager and this machine's hardware (blocking: call in a thread)."""
    from ..plugins import get_plugin_manager
    from ..resources import probe_hardware

    pm = getattr(request.app.state, "plugin_manager", None) or get_plugin_manager()
    probe = getattr(request.app.state, "hardware", None) or probe_hardware
    return pm, probe()


async def query_engines(request: Request) -> Response:
    """Per engine: the specs it can run here, or why it cannot (Xinference's /v1/engines shape)."""
    raw_type = request.path_params.get("model_type")
    model_type = _model_type(raw_type) if raw_type is not None else None
    catalog = await _catalog(request)
    family = catalog.get(request.path_params["model_name"], model_type)

    def table() -> dict[str, Any]:
        from .. import envs
        from ..matching import engine_table

        pm, hardware = _plugins_and_hardware(request)
        environments = envs.states(pm, envs.EnvStore())
        return cast(dict[str, Any], engine_table(pm, family, hardware, environments))

    return JSONResponse(await anyio.to_thread.run_sync(table))


async def estimate_memory(request: Request) -> Response:
    """``modelyard cal-model-mem`` over HTTP: memory for one spec on the engine a launch would
    pick (or ``model_engine``), at the asked context length and parallelism."""
    from ..memory import estimate_memory as estimate
    from ..specs import parse_size

    query = request.query_params
    raw_type = query.get("model_type")
    try:
        size = parse_size(query.get("size"))
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"invalid size: {exc}", param="size") from None
    options = {
        "model_name": request.path_params["model_name"],
        "model_type": _model_type(raw_type) if raw_type else None,
        "model_format": query.get("model_format") or None,
        "size": size,
        "quantization": query.get("quantization") or None,
        "engine": query.get("model_engine") or None,
        "context_length": query_int(request, "context_length"),
        "parallel": query_int(request, "parallel"),
    }
    catalog = await _catalog(request)

    def answer() -> dict[str, Any]:
        pm, hardware = _plugins_and_hardware(request)
        return estimate(pm, catalog, hardware, **options).to_json()

    return JSONResponse(await anyio.to_thread.run_sync(answer))
