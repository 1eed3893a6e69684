"""modelyard on a Ray cluster: the server is the supervisor, each runner a Ray actor on some node.

``modelyard serve --cluster ADDRESS`` connects to a running Ray cluster (``auto``: the one this
machine belongs to). Launches then place each runner's host actor (``host.RunnerHost``) by Ray's
scheduler: on the node a launch names (``worker_ip``), on a node offering the launch's
``node_resources`` (Ray custom resources), else wherever Ray finds room. The runner itself, its
engine environment and its protocol are unchanged: the actor starts it on its node and relays its
connection. Ray stays optional (``modelyard[cluster]``) and is imported only here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any, Literal

import anyio
import msgspec
from anyio.abc import TaskGroup

from ..errors import InvalidRequest, LaunchError, ModelyardError
from ..runner import protocol as p
from ..runner.process import RunnerProcess
from ..specs import ModelSpec

NAMESPACE = "modelyard"
FetchStage = Literal["downloading", "loading"]
FETCH_POLL = 0.5  # seconds between download progress reports from a node


class Fetch(msgspec.Struct, frozen=True):
    """Weights a runner's node downloads itself (the supervisor never holds them)."""

    spec: ModelSpec
    quantization: str
    hub: str | None
    on_progress: Callable[[FetchStage, float], None]  # (stage, 0..1)


class RayCluster:
    """The supervisor's view of the Ray cluster it runs on."""

    def __init__(self, address: str) -> None:
        self.address = address

    def connect(self) -> None:
        """Join the cluster as a driver; a clear error when no cluster answers there."""
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            import ray
        except ImportError:
            raise LaunchError("--cluster needs Ray: pip install 'modelyard[cluster]'") from None
        try:
            ray.init(
                address=self.address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise LaunchError(
                f"no Ray cluster answers at {self.address!r} ({exc}); start a head node first "
                "(`modelyard supervisor` or `ray start --head`) and pass its address"
            ) from None

    def disconnect(self) -> None:
        import ray

        ray.shutdown()

    def nodes(self) -> list[dict[str, Any]]:
        """Every live node: id, address, and its resources in total and free now."""
        import ray

        free = _available_per_node()
        return [
            {
                "node_id": node["NodeID"],
                "address": node["NodeManagerAddress"],
                "resources": dict(node["Resources"]),
                "available": free.get(node["NodeID"], {}),
            }
            for node in ray.nodes()
            if node["Alive"]
        ]

    def placement(self, worker_ip: str | None, resources: Mapping[str, float]) -> dict[str, Any]:
        """Ray actor options that put a runner where a launch asks for it."""
        options: dict[str, Any] = {}
        if resources:
            nodes = self.nodes()
            if not any(_offers(node["resources"], resources) for node in nodes):
                offered = "; ".join(f"{n['address']} {_custom(n['resources'])}" for n in nodes)
                raise InvalidRequest(
                    f"no node offers the resources {dict(resources)} (nodes: {offered}); start a "
                    "worker with them (`modelyard worker --resources ...`)",
                    param="node_resources",
                )
            options["resources"] = dict(resources)
        if worker_ip is not None:
            nodes = [n for n in self.nodes() if n["address"] == worker_ip]
            if not nodes:
                known = ", ".join(sorted({n["address"] for n in self.nodes()})) or "none"
                raise InvalidRequest(
                    f"no live node has worker_ip {worker_ip!r} (nodes: {known})", param="worker_ip"
                )
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                nodes[0]["node_id"], soft=False
            )
        return options

    async def spawn(
        self,
        load: p.LoadSpec,
        *,
        tg: TaskGroup,
        env: Mapping[str, str],
        placement: Mapping[str, Any],
        max_pending: int,
        heartbeat_timeout: float | None,
        fetch: Fetch | None = None,
    ) -> RunnerProcess:
        """Start the model's runner on the node Ray picks and drive it like a local one. With
        ``fetch``, the weights are downloaded on that node first (``load.path`` is set from it)."""
        from .host import ActorByteStream, RayHandle, host_actor

        actor = host_actor(placement)
        try:
            if fetch is not None:
                load = msgspec.structs.replace(load, path=await _fetch_on_node(actor, fetch))
                fetch.on_progress("loading", 0.0)
            started = await actor.start.remote(load.uid, load.engine, dict(env))
        except Exception as exc:
            import ray

            ray.kill(actor)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ModelyardError):
                raise cause from None
            raise LaunchError(f"the runner could not start on the cluster: {exc}") from None
        node_id = started["node_id"]
        address = next((n["address"] for n in self.nodes() if n["node_id"] == node_id), None)
        return await RunnerProcess.attach(
            RayHandle(actor, started["pid"], node_id, address),
            ActorByteStream(actor),
            load,
            tg=tg,
            max_pending=max_pending,
            heartbeat_timeout=heartbeat_timeout,
        )


def _available_per_node() -> dict[str, dict[str, float]]:
    # Ray exposes free resources per node only through its state API; the private helper is what
    # `ray status` uses and needs no dashboard.
    from ray._private import state

    try:
        found: dict[str, dict[str, float]] = state.available_resources_per_node()
    except Exception:
        return {}
    return found


async def _fetch_on_node(actor: Any, fetch: Fetch) -> str:
    """The node's path of the weights, reporting the node's download progress meanwhile."""
    call = actor.fetch.remote(fetch.spec, fetch.quantization, fetch.hub)
    while True:
        with anyio.move_on_after(FETCH_POLL):
            path: str = await call
            return path
        fetch.on_progress("downloading", await actor.progress.remote())


def _offers(total: Mapping[str, float], wanted: Mapping[str, float]) -> bool:
    return all(total.get(name, 0.0) >= amount for name, amount in wanted.items())


def _custom(resources: Mapping[str, float]) -> dict[str, float]:
    """A node's resources without Ray's bookkeeping ones (node:IP, memory in bytes...)."""
    return {k: v for k, v in resources.items() if not k.startswith("node:") and "memory" not in k}
