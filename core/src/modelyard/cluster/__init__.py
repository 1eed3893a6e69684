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
from ..runner.planning import LaunchPlan
from ..runner.process import RunnerProcess
from ..runner.replicas import assign_nodes
from ..specs import Family, Hardware, LaunchRequest, ModelSpec

log = logging.getLogger("modelyard.cluster")
NAMESPACE = "modelyard"
# Ray can place an actor on a node that has just died and that it has not yet found dead; the
# actor then dies before it starts. Placed by Ray's choice, it is placed again (a node-pinned one
# is not: the same node would die again).
PLACEMENT_RETRIES = 2
PLACEMENT_PAUSE = 1.0  # seconds, for Ray's health check to mark the dead node
FetchStage = Literal["downloading", "loading"]
FETCH_POLL = 0.5
PLAN_TIMEOUT = 60.0  # a node's first plan imports its plugins
Policy = Literal[
    "spread", "pack"
]  # most free memory first (Xinference's idle-first) / least  # seconds between download progress reports from a node


class Fetch(msgspec.Struct, frozen=True):
    """Weights a runner's node downloads itself (the supervisor never holds them)."""

    spec: ModelSpec
    quantization: str
    hub: str | None
    on_progress: Callable[[FetchStage, float], None]  # (stage, 0..1)


class RayCluster:
    """The supervisor's view of the Ray cluster it runs on."""

    def __init__(self, address: str, policy: Policy = "spread") -> None:
        self.address = address
        self.policy = policy

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

    def candidates(
        self, worker_ip: str | None, resources: Mapping[str, float]
    ) -> list[dict[str, Any]]:
        """The live nodes a launch may run on; a 400 naming the nodes when none qualifies."""
        nodes = self.nodes()
        if worker_ip is not None:
            known = ", ".join(sorted({n["address"] for n in nodes})) or "none"
            nodes = [n for n in nodes if n["address"] == worker_ip]
            if not nodes:
                raise InvalidRequest(
                    f"no live node has worker_ip {worker_ip!r} (nodes: {known})", param="worker_ip"
                )
        if resources:
            offering = [n for n in nodes if _offers(n["resources"], resources)]
            if not offering:
                offered = "; ".join(f"{n['address']} {_custom(n['resources'])}" for n in nodes)
                raise InvalidRequest(
                    f"no node offers the resources {dict(resources)} (nodes: {offered}); start a "
                    "worker with them (`modelyard worker --resources ...`)",
                    param="node_resources",
                )
            nodes = offering
        return nodes

    def plan(
        self,
        request: LaunchRequest,
        family: Family,
        occupied: Mapping[str, int] | None = None,
    ) -> LaunchPlan:
        """Plan the launch on each candidate node, by that node (its hardware, its engine plugins
        and environments), then place each of its ``replica`` runners on a node that can run it,
        in the policy's order: most free memory first and each replica on the node holding fewest
        of the model's (spread), or the tightest fit filled first (pack). ``occupied``: the
        model's replicas already running, per node (scaling up). A 400 with every node's reason
        when none can."""
        nodes = self.candidates(request.worker_ip, request.node_resources)
        one = msgspec.structs.replace(request, replica=1)  # each node answers for one runner
        answers = _plan_on_nodes([node["node_id"] for node in nodes], one, family)
        free = {
            id_: a.hardware.memory_available
            for id_, a in answers.items()
            if isinstance(a, NodeAnswer)
        }
        nodes.sort(key=lambda n: free.get(n["node_id"], 0), reverse=self.policy == "spread")
        refusals: list[str] = []
        errors: list[ModelyardError] = []
        room: dict[str, int] = {}
        for node in nodes:
            answer = answers.get(node["node_id"], "did not answer")
            if isinstance(answer, str):
                refusals.append(f"- {_name(node)}: {answer}")
            elif answer.plan is not None:
                room[node["node_id"]] = _room(answer, node, request.node_resources, request.replica)
            else:
                error = ModelyardError.from_dict(answer.error or {})
                refusals.append(f"- {_name(node)} ({_free(answer.hardware)}): {error.message}")
                errors.append(error)
        if room:
            try:
                chosen = assign_nodes(
                    request.replica, room, occupied or {}, spread=self.policy == "spread"
                )
            except LaunchError as exc:
                rooms = "\n".join(
                    f"- {_name(node)}: room for {room[node['node_id']]} "
                    f"(free: {_free_resources(node, request.node_resources)})"
                    for node in nodes
                    if node["node_id"] in room
                )
                raise LaunchError(
                    f"{request.model_name}: {exc.message}:\n{rooms}",
                    param="replica",
                    code="no_node_fits",
                ) from None
            found = answers[chosen[0]]
            assert isinstance(found, NodeAnswer) and found.plan is not None
            return msgspec.structs.replace(found.plan, replica=request.replica, node_ids=chosen)
        if len(errors) == len(nodes) and len({e.message for e in errors}) == 1:
            raise errors[0]  # the same answer everywhere (a bad option): say it once
        raise LaunchError(
            f"{request.model_name} fits on no node of the cluster:\n" + "\n".join(refusals),
            code="no_node_fits",
        )

    def placement(self, plan: LaunchPlan, node_id: str | None = None) -> dict[str, Any]:
        """Ray actor options that put a runner where its plan says (``node_id``: the node chosen
        for this replica; None: any node that offers the plan's resources)."""
        options: dict[str, Any] = {}
        if plan.node_resources:
            options["resources"] = dict(plan.node_resources)
        if node_id is None and plan.worker_ip is not None:
            node_id = self.candidates(plan.worker_ip, {})[0]["node_id"]
        if node_id is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
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

        attempt = 0
        while True:
            actor = host_actor(placement)
            try:
                if fetch is not None:
                    load = msgspec.structs.replace(load, path=await _fetch_on_node(actor, fetch))
                    fetch.on_progress("loading", 0.0)
                started = await actor.start.remote(load.uid, load.engine, dict(env))
                break
            except Exception as exc:
                import ray

                ray.kill(actor)
                if attempt < PLACEMENT_RETRIES and placed_on_a_dead_node(exc, placement):
                    attempt += 1
                    log.warning("a runner's actor died before it started; placing it again")
                    await anyio.sleep(PLACEMENT_PAUSE)
                    continue
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


def placed_on_a_dead_node(exc: BaseException, placement: Mapping[str, Any]) -> bool:
    """Whether an actor that Ray placed died for a system reason (its node or process, not its
    own code) before it started: then another placement can succeed."""
    from ray.exceptions import RayActorError

    return (
        isinstance(exc, RayActorError)
        and not exc.actor_init_failed
        and "scheduling_strategy" not in placement
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


class NodeAnswer(msgspec.Struct, frozen=True):
    """What a node says of a launch: its hardware, and its plan or why it cannot run it."""

    hardware: Hardware
    plan: LaunchPlan | None = None
    error: dict[str, Any] | None = None  # ModelyardError.to_dict()


def plan_here(request: LaunchRequest, family: Family) -> NodeAnswer:
    """Runs on a node (a Ray task): plan the launch with this node's hardware, plugins and engine
    environments; the family comes from the supervisor's catalog."""
    from ..plugins import get_plugin_manager
    from ..resources import probe_hardware
    from ..runner.planning import plan_launch

    hardware = probe_hardware()
    try:
        plan = plan_launch(
            request, pm=get_plugin_manager(), catalog=_OneFamily(family), hardware=hardware
        )
    except (LaunchError, InvalidRequest) as exc:  # this node cannot take it
        return NodeAnswer(hardware, error=exc.to_dict())
    return NodeAnswer(hardware, plan=plan)


class _OneFamily:
    """The supervisor's catalog entry for the launch, as a catalog (nodes may not have it)."""

    def __init__(self, family: Family) -> None:
        self.family = family

    def get(self, name: str, model_type: Any = None) -> Family:
        return self.family

    def select_spec(self, family: Family, **filters: Any) -> tuple[ModelSpec, str]:
        from ..catalog.store import select_spec

        return select_spec(family, **filters)


def _plan_on_nodes(
    node_ids: list[str], request: LaunchRequest, family: Family
) -> dict[str, NodeAnswer | str]:
    """Each node's answer (or why it gave none), asked in parallel: zero-CPU tasks pinned to the
    nodes."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(plan_here)
    refs = {
        node_id: task.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)
        ).remote(request, family)
        for node_id in node_ids
    }
    found: dict[str, NodeAnswer | str] = {}
    for node_id, ref in refs.items():
        try:
            found[node_id] = ray.get(ref, timeout=PLAN_TIMEOUT)
        except Exception as exc:  # a node that died or hangs is not a candidate; say why
            cause = getattr(exc, "cause", None) or exc  # a RayTaskError carries the task's own
            found[node_id] = f"did not answer ({type(cause).__name__}: {str(cause)[:200]})"
    return found


def _room(
    answer: NodeAnswer, node: Mapping[str, Any], wanted: Mapping[str, float], most: int
) -> int:
    """How many runners of the plan a node can take now: by its free memory for a CPU estimate,
    one per device for a GPU one, and by the custom resources each runner holds."""
    estimate = answer.plan.estimate if answer.plan is not None else None
    room = most
    if estimate is not None and estimate.device == "cpu" and estimate.total > 0:
        room = min(room, max(1, answer.hardware.memory_available // estimate.total))
    elif estimate is not None and estimate.device == "gpu" and answer.hardware.accelerators:
        room = min(room, len(answer.hardware.accelerators))
    available = node.get("available") or node.get("resources") or {}
    for name, amount in wanted.items():
        if amount > 0:
            room = min(room, int(available.get(name, 0.0) // amount))
    return room


def _free_resources(node: Mapping[str, Any], wanted: Mapping[str, float]) -> dict[str, float]:
    """A node's free custom resources, the wanted ones included (Ray omits those used up)."""
    return {**{name: 0.0 for name in wanted}, **_custom(node.get("available") or {})}


def _name(node: Mapping[str, Any]) -> str:
    return f"node {node['address']} ({str(node['node_id'])[:8]})"


def _free(hardware: Hardware) -> str:
    gib = 1024**3
    return (
        f"{hardware.memory_available / gib:.1f} of {hardware.memory_total / gib:.1f} GiB free, "
        f"{hardware.cpu_count} CPUs, {len(hardware.accelerators)} GPUs"
    )


def _offers(total: Mapping[str, float], wanted: Mapping[str, float]) -> bool:
    return all(total.get(name, 0.0) >= amount for name, amount in wanted.items())


def _custom(resources: Mapping[str, float]) -> dict[str, float]:
    """A node's resources without Ray's bookkeeping ones (node:IP, memory in bytes...)."""
    return {k: v for k, v in resources.items() if not k.startswith("node:") and "memory" not in k}
