"""Model lifecycle routes, shaped like Xinference's REST API (see XINFERENCE_API.md §2-4).

Every success is a 200 with a JSON body (``null`` included) because xinference-client tests for
200 exactly and parses the body; every failure is a modelyard error, so a JSON body with ``detail``.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..errors import InvalidRequest
from ..states import LOADING_RETRY_AFTER, LOADING_STATES
from . import api_types as T
from .errors import JSONResponse, decode_body, invalid_body, read_body
from .launch import parse_launch, parse_wait_ready, query_int
from .models import describe, model_object, warm_runners
from .openai_routes import manager_of
from .policy import check_launch, security_of

_STARTED = time.time()


async def launch_model(request: Request) -> Response:
    wait_ready = parse_wait_ready(request.query_params.get("wait_ready"))
    body = await read_body(request)
    try:
        payload = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise invalid_body(exc, "launch request") from None
    launch = check_launch(parse_launch(payload), security_of(request))
    uid = await manager_of(request).launch(launch, wait_ready=wait_ready)
    request.state.model = uid
    return JSONResponse({"model_uid": uid})


async def list_models(request: Request) -> Response:
    """OpenAI's list (``id`` is the uid), with Xinference's describe keys and modelyard's state.

    Unlike Xinference, models that are still loading are listed too (with their ``state``), so
    that ``modelyard list`` shows launches in progress."""
    records = manager_of(request).list()
    return JSONResponse({"object": "list", "data": [model_object(record) for record in records]})


async def describe_model(request: Request) -> Response:
    uid = request.path_params["uid"]
    record = manager_of(request).get(uid)
    request.state.model = record.uid
    if record.state in LOADING_STATES:
        # Xinference answers 503 while loading; the progress route tells how far it got.
        message = (
            f"model {uid} is {record.state} ({record.progress:.0%} done); retry when it is ready"
        )
        body: dict[str, Any] = {
            "error": {
                "message": message,
                "type": "service_unavailable",
                "param": None,
                "code": "model_loading",
            },
            "detail": message,
            "state": record.state,
            "progress": record.progress,
        }
        return JSONResponse(
            body, status_code=503, headers={"retry-after": str(LOADING_RETRY_AFTER)}
        )
    return JSONResponse(model_object(record))


async def terminate_model(request: Request) -> Response:
    uid = request.path_params["uid"]
    manager = manager_of(request)
    manager.get(uid)  # unknown uid: 404 before anything else
    request.state.model = uid
    await manager.terminate(uid)
    return JSONResponse({"id": uid, "object": "model", "deleted": True})


async def launch_progress(request: Request) -> Response:
    uid = request.path_params["uid"]
    manager = manager_of(request)
    manager.get(uid)
    request.state.model = uid
    progress = dict(manager.progress(uid))
    # Xinference names the phase "stage"; its clients read that key.
    progress.setdefault("stage", progress.get("state"))
    return JSONResponse(progress)


async def scale_model(request: Request) -> Response:
    """Run ``replica`` replicas of a model from now on (``modelyard scale``); the model as then."""
    uid = request.path_params["uid"]
    body = await decode_body(request, _SCALE, "scale request")
    manager = manager_of(request)
    manager.get(uid)
    request.state.model = uid
    record = await manager.scale(uid, body.replica, drain_timeout=body.drain_timeout)
    return JSONResponse(model_object(record))


async def add_replicas(request: Request) -> Response:
    """Xinference's ``add_model_replica``: more replicas of a running model, placed like its own."""
    uid = request.path_params["uid"]
    body = await decode_body(request, _ADD_REPLICAS, "replica request")
    manager = manager_of(request)
    record = manager.get(uid)
    request.state.model = uid
    if body.model_engine not in (None, record.engine):
        raise InvalidRequest(
            f"model {uid!r} runs on {record.engine}; its replicas do too (model_engine "
            f"{body.model_engine!r} cannot be chosen per replica)",
            param="model_engine",
        )
    if body.n_gpu not in (None, "auto"):
        raise InvalidRequest(
            "n_gpu cannot be chosen per replica: replicas share the launch's gpu_idx",
            param="n_gpu",
        )
    record = await manager.add_replicas(uid, body.replica)
    return JSONResponse(model_object(record))


async def remove_replica(request: Request) -> Response:
    """Xinference's ``terminate_model_replica``: drain and stop one replica (its id: the index
    ``/v1/models/{uid}`` lists, or Xinference's ``{uid}-{index}``)."""
    uid, replica_id = request.path_params["uid"], request.path_params["replica_id"]
    manager = manager_of(request)
    manager.get(uid)
    request.state.model = uid
    index = replica_id.removeprefix(f"{uid}-")
    if not index.isdigit():
        raise InvalidRequest(
            f"replica_id {replica_id!r} is not a replica id: use the index listed in the model's "
            "replicas (or uid-index)",
            param="replica_id",
        )
    record = await manager.remove_replica(uid, int(index))
    return JSONResponse(
        {"model_uid": uid, "replica_id": replica_id, "remaining_replicas": record.replica}
    )


_SCALE = msgspec.json.Decoder(T.ScaleBody)
_ADD_REPLICAS = msgspec.json.Decoder(T.AddReplicasBody)
MAX_LOG_LINES = 200


async def model_logs(request: Request) -> Response:
    """The last lines the model's runner wrote (its engine's output included)."""
    uid = request.path_params["uid"]
    lines = query_int(request, "lines", high=MAX_LOG_LINES) or 50
    manager = manager_of(request)
    manager.get(uid)
    request.state.model = uid
    return JSONResponse({"uid": uid, "lines": await manager.logs(uid, lines)})


async def cancel_launch(request: Request) -> Response:
    uid = request.path_params["uid"]
    manager = manager_of(request)
    manager.get(uid)
    request.state.model = uid
    await manager.cancel(uid)
    return JSONResponse(None)


async def abort_request(request: Request) -> Response:
    """Xinference's abort: end one request in flight (its id: X-Request-Id or ``request_id``)."""
    uid, request_id = request.path_params["uid"], request.path_params["request_id"]
    manager = manager_of(request)
    manager.get(uid)  # unknown model: 404 naming the model
    request.state.model = uid
    return JSONResponse(manager.abort(uid, request_id))


async def health(request: Request) -> Response:
    """Open without a key, so it says nothing but that the server answers."""
    return JSONResponse({"status": "ok"})


async def status(request: Request) -> Response:
    states: dict[str, int] = {}
    for record in manager_of(request).list():
        states[record.state] = states.get(record.state, 0) + 1
    return JSONResponse(
        {
            "status": "ok",
            "version": __version__,
            "uptime_s": round(time.time() - _STARTED, 3),
            "models": states,
            "warm_runners": warm_runners(manager_of(request)),
        }
    )


async def cluster_auth(request: Request) -> Response:
    # xinference-client sends its api_key (as Bearer) only when this says auth is on.
    keys = request.app.state.security.keys
    return JSONResponse({"auth": await anyio.to_thread.run_sync(keys.enabled)})


async def cluster_version(request: Request) -> Response:
    return JSONResponse({"version": __version__, "full-revisionid": None})


async def list_plugins(request: Request) -> Response:
    """The installed engine plugins and the engines they provide (``modelyard plugins`` as JSON)."""
    from ..plugins import PluginManager, get_plugin_manager

    pm: PluginManager | None = getattr(request.app.state, "plugin_manager", None)
    if pm is None:
        pm = await anyio.to_thread.run_sync(get_plugin_manager)
    plugins = msgspec.to_builtins(pm.describe())
    engines = msgspec.to_builtins(list(pm.engines().values()))
    return JSONResponse({"plugins": plugins, "engines": engines})


async def cluster_info(request: Request) -> Response:
    """The Ray cluster this server supervises (``modelyard worker`` joins it), or null address."""
    cluster = getattr(manager_of(request), "cluster", None)
    return JSONResponse({"ray_address": cluster.address if cluster is not None else None})


async def supervisor_info(request: Request) -> Response:
    """Xinference's ``get_supervisor_info``: the address this server (the supervisor) answers on."""
    host, port = request.scope.get("server") or ("127.0.0.1", None)
    return JSONResponse({"supervisor_ip": f"{host}:{port}" if port else host})


async def list_workers(request: Request) -> Response:
    """Xinference's ``get_workers_info``: each node (this machine when not on a cluster) with its
    resources, what is free now, and the models whose runners it hosts."""
    manager = manager_of(request)
    nodes = await anyio.to_thread.run_sync(manager.nodes)
    records = manager.list()
    single = len(nodes) == 1 and nodes[0]["node_id"] is None
    return JSONResponse(
        [
            {
                "work-ip": node["address"],
                **node,
                "models": {
                    r.uid: describe(r) for r in records if single or node["node_id"] in _nodes_of(r)
                },
            }
            for node in nodes
        ]
    )


def _nodes_of(record: Any) -> set[str | None]:
    """The nodes a model's runners run on: each replica's (the record's own for a single one)."""
    replicas = getattr(record, "replicas", None) or ()
    return {r.node_id for r in replicas} or {getattr(record, "node_id", None)}


async def list_environments(request: Request) -> Response:
    """Per engine: the interpreter its runners start with, its library, available or why not
    (``modelyard env list`` as JSON). Other environments answer through a cached probe."""
    from ..envs import EnvStore
    from ..envs import describe as describe_envs
    from ..plugins import PluginManager, get_plugin_manager

    pm: PluginManager | None = getattr(request.app.state, "plugin_manager", None)
    if pm is None:
        pm = await anyio.to_thread.run_sync(get_plugin_manager)
    found = await anyio.to_thread.run_sync(describe_envs, pm, EnvStore())
    return JSONResponse({"environments": msgspec.to_builtins(found)})
