"""ModelManager: the local worker. Launches models into runner subprocesses and routes requests.

Use it as ``async with ModelManager() as manager:`` (the server's lifespan does); on asyncio it also
starts itself on first use, and ``aclose()`` stops every runner. A launch goes creating → (plan) →
downloading → loading → ready; a failed launch removes its record and raises why. A runner that
dies later leaves its record in state "error" with the cause; launching the same uid replaces it.
A runner that stops answering its heartbeat is "unresponsive" (new requests get 503) until it
answers again, or, launched with ``restart_unresponsive``, is killed and loaded afresh. Every
request has a deadline: the launch's ``request_timeout``, else the manager's.

Models on demand: a model idle for its ``keep_alive`` is unloaded (runner stopped, record kept as
"unloaded") and the next request reloads it through the same launch path, waiting at most
``load_wait`` seconds (then 503 with the progress). Loading a model that exceeds
``max_loaded_models`` or the memory unloads least-recently-used idle models first; a model with
requests in flight is never unloaded. With ``auto_launch`` a request naming a catalog model that
is not running launches it. Requests carry ids; ``abort`` ends one.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from ..engine import Chunk
from ..envs.store import EnvStore
from ..errors import (
    Conflict,
    InvalidRequest,
    LaunchError,
    ModelNotFound,
    ModelyardError,
    Unavailable,
)
from ..keepalive import parse_keep_alive
from ..plugins import PluginManager, format_exception, get_plugin_manager
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from ..specs import Family, Hardware, LaunchRequest
from ..states import LOADING_STATES, require_ready
from . import demand
from . import protocol as p
from .background import Background
from .on_demand import OnDemand
from .planning import CatalogLike, LaunchPlan, plan_launch, replica_devices
from .process import RunnerProcess
from .records import ModelRecord, Slot, snapshot
from .replicas import Replica, model_state, prompt_text
from .routing import ReplicaRouter
from .scaling import Scaling
from .warm import WarmRunners, warm_key

if TYPE_CHECKING:
    from ..references import ReferenceLaunch

if TYPE_CHECKING:
    from ..cluster import FetchStage, RayCluster

log = logging.getLogger("modelyard.manager")
Resolve = Callable[..., Path]


# Long enough for thousands of tokens on a CPU; ``serve --request-timeout`` changes it.
DEFAULT_REQUEST_TIMEOUT = 600.0
MAX_RELAUNCHES = 3  # restart_lost: a runner that keeps dying is left in state error
# How long a request waits for its model to load on demand before a 503 with the progress.
DEFAULT_LOAD_WAIT = 120.0
# A started model's states that follow its replicas' (loading: one is being relaunched).
SERVING_STATES = frozenset({"ready", "loading", "unresponsive", "error"})


def _default_max_pending() -> int:
    return int(os.environ.get("MODELYARD_MAX_PENDING") or 64)


def openmp_waiting(environ: Mapping[str, str]) -> dict[str, str]:
    """How the runners' OpenMP threads wait between parallel regions, unless the user chose.

    OpenMP's default spins for milliseconds: the spinning threads of several runners (or of one
    runner beside other busy processes) take the cores the others need: on 2 cores beside one busy
    process, torch's encode ran 1.5x slower than with passive waiting. Fully passive waiting avoids
    that but costs ~12% on a quiet machine (each region wakes the sleeping threads through the
    kernel). GNU OpenMP (torch's, on Linux) spins ~30 us and then sleeps with
    ``GOMP_SPINCOUNT=3000``, which overrides the passive policy: as fast as the default when the
    cores are free, as passive when they are not (docs/performance.md). Other OpenMP runtimes take
    the passive policy.
    """
    chosen = {key: environ[key] for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT") if key in environ}
    return chosen or {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


class ModelManager(OnDemand, Scaling):
    def __init__(
        self,
        *,
        pm: PluginManager | None = None,
        catalog: CatalogLike | None = None,
        hardware: Callable[[], Hardware] | None = None,
        resolve: Resolve | None = None,
        max_pending: int | None = None,
        runner_env: Mapping[str, str] | None = None,
        terminate_grace: float = 5.0,
        request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
        heartbeat_timeout: float | None = None,
        cluster: RayCluster | None = None,
        keep_alive: float | None = None,
        max_loaded_models: int | None = None,
        auto_launch: bool = False,
        load_wait: float = DEFAULT_LOAD_WAIT,
        warm_runners: bool = True,
    ) -> None:
        self._pm = pm
        self.cluster = cluster  # None: runners are subprocesses of this server
        self.warm = WarmRunners(enabled=warm_runners and cluster is None)
        self._catalog = catalog
        self._hardware = hardware
        self._resolve = resolve
        self.max_pending = max_pending or _default_max_pending()
        self.runner_env = {**openmp_waiting(os.environ), **(runner_env or {})}
        self.terminate_grace = terminate_grace
        self.request_timeout = request_timeout  # None: no deadline
        self.heartbeat_timeout = heartbeat_timeout  # None: MODELYARD_HEARTBEAT_TIMEOUT or 5 s
        self._slots: dict[str, Slot] = {}
        self._failures: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._background = Background()
        self.keep_alive = keep_alive  # seconds an idle model stays loaded; None: forever
        self.max_loaded_models = max_loaded_models
        self.auto_launch = auto_launch
        self.load_wait = load_wait
        self._room = anyio.Lock()  # one eviction decision at a time

    # --- lifecycle of the manager ---
    async def __aenter__(self) -> ModelManager:
        await self._background.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> bool | None:
        await self.aclose()
        return await self._background.__aexit__(*exc_info)

    async def aclose(self) -> None:
        """Terminate every runner (and cancel launches in progress)."""
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for uid in list(self._slots):
                    tg.start_soon(self._terminate_quietly, uid)
                tg.start_soon(self.warm.aclose)
            await self._background.close()

    async def _terminate_quietly(self, uid: str) -> None:
        with contextlib.suppress(ModelNotFound):
            await self.terminate(uid)

    # --- launching ---
    async def launch(self, request: LaunchRequest, *, wait_ready: bool = True) -> str:
        """Plan, download, spawn and load. Returns the uid; with ``wait_ready`` only once ready.

        Planning errors (unknown model, no engine, not enough memory) are raised even when
        ``wait_ready`` is False; later failures are raised to a waiting caller and remembered for
        ``get``/``progress`` of that uid.
        """
        tg = await self._background.group()
        slot = self._claim(request.model_uid, request.model_name)
        slot.record.model_type = request.model_type
        if not wait_ready and request.source is not None and _is_remote(request.source):
            # Its family is read from the weights, so planning waits for the download: in the
            # background, for the caller to follow on the progress route.
            tg.start_soon(self._launch_quietly, slot, request)
            return slot.record.uid
        return await self._start(slot, await self._plan(slot, request), wait_ready)

    async def _launch_quietly(self, slot: Slot, request: LaunchRequest) -> None:
        # Its own scope for planning (a scope is entered once; the load enters the slot's).
        plan: LaunchPlan | None = None
        planning = slot.planning = anyio.CancelScope()
        with planning, contextlib.suppress(ModelyardError):  # remembered for progress/get
            plan = await self._plan(slot, request)
        if planning.cancelled_caught:
            self._remove(slot, LaunchError(f"the launch of {slot.record.uid!r} was cancelled"))
        elif plan is not None:
            await self._start(slot, plan, wait_ready=False)

    async def _plan(self, slot: Slot, request: LaunchRequest) -> LaunchPlan:
        """Read a referenced model's family (downloading it first), choose the engine, check the
        memory (counting what unloading idle models would free). Failures remove the slot."""
        try:
            reference: ReferenceLaunch | None = None
            if request.source is not None:
                from ..references import prepare_reference  # only for launches by reference

                reference = await prepare_reference(request, slot.record)
                request = reference.request
            plan = await self._place(request, slot, reference.family if reference else None)
            slot.request = request
            if reference is not None and request.register:
                await anyio.to_thread.run_sync(self._save_registration, reference)
        except BaseException as exc:
            self._remove(slot, exc if isinstance(exc, ModelyardError) else None)
            slot.settled.set()
            raise
        return plan

    def _save_registration(self, reference: ReferenceLaunch) -> None:
        catalog = self._get_catalog()
        register = getattr(catalog, "register", None)
        if register is None:
            raise LaunchError("this catalog cannot save registrations", param="register")
        register(reference.family, persist=True)
        reference_log = f"saved as the custom registration {reference.family.model_name}"
        log.info("model %s: %s", reference.request.model_name, reference_log)

    async def start(
        self, plan: LaunchPlan, *, uid: str | None = None, wait_ready: bool = True
    ) -> str:
        """Launch an already planned model (``plan.path`` set skips the download)."""
        await self._background.group()
        slot = self._claim(uid, plan.model_name)
        return await self._start(slot, plan, wait_ready)

    def _claim(self, requested: str | None, model_name: str) -> Slot:
        if requested:
            uid = requested
            existing = self._slots.get(uid)
            if existing is not None and not existing.dead:
                raise Conflict(
                    f"model uid {uid!r} is already in use (state {existing.record.state}); "
                    "terminate it first or choose another model_uid",
                    param="model_uid",
                )
        else:
            uid, n = model_name, 0
            while uid in self._slots and not self._slots[uid].dead:
                n += 1
                uid = f"{model_name}-{n}"
        if uid in self._slots:  # a dead runner's record: the relaunch replaces it
            self._remove(self._slots[uid], None)
        self._failures.pop(uid, None)
        slot = Slot(ModelRecord(uid=uid, model_name=model_name, created=time.time()))
        self._slots[uid] = slot
        return slot

    async def _start(self, slot: Slot, plan: LaunchPlan, wait_ready: bool) -> str:
        record = slot.record
        record.model_name, record.model_type = plan.model_name, plan.model_type
        record.family, record.spec, record.quantization = plan.family, plan.spec, plan.quantization
        record.engine, record.params = plan.engine, dict(plan.params)
        record.request_timeout = plan.request_timeout
        record.engine_reason = plan.engine_reason
        record.keep_alive = (
            self.keep_alive if plan.keep_alive is None else parse_keep_alive(plan.keep_alive)
        )
        record.memory_estimate = plan.estimate.total if plan.estimate is not None else None
        record.replica = plan.replica
        slot.enable_thinking = plan.enable_thinking
        slot.plan = plan
        tg = await self._background.group()
        tg.start_soon(self._bring_up, slot, plan)
        if wait_ready:
            await slot.settled.wait()
            if slot.failure is not None:
                raise slot.failure
        return record.uid

    async def _bring_up(self, slot: Slot, plan: LaunchPlan, *, reload: bool = False) -> None:
        """Load ``plan`` into new runners, one per replica. A failed launch removes the record; a
        failed reload leaves it "unloaded" with the error, for the next request to try again."""
        record = slot.record
        failure: ModelyardError | None = None
        try:
            with slot.scope:
                await self._make_room(slot, plan)
                if plan.path is None:
                    record.state, record.progress = "downloading", 0.0
                    if self.cluster is None:  # on a cluster each runner's node fetches them
                        plan = msgspec.structs.replace(
                            plan, path=str(await self._download(record, plan))
                        )
                slot.plan = plan
                if self.cluster is None:
                    slot.python = await self._interpreter(record, plan)
                record.state, record.progress = "loading", 0.0
                nodes: list[str | None] = [*plan.node_ids[: record.replica]]
                nodes += [None] * (record.replica - len(nodes))  # scaled up since it was planned
                slot.replicas = [self._new_replica(slot, node) for node in nodes]
                await self._start_replicas(slot, slot.replicas)
                record.state, record.progress, record.error = "ready", 1.0, None
                self._sync(slot)
                self._loaded_now(slot, reload)
            if slot.scope.cancelled_caught:
                failure = LaunchError(f"the launch of {record.uid!r} was cancelled")
        except ModelyardError as exc:
            failure = exc
        except Exception as exc:
            log.exception("launch of %s failed", record.uid)
            failure = LaunchError(f"the launch of {record.uid!r} failed: {format_exception(exc)}")
        except BaseException:
            failure = LaunchError(f"the launch of {record.uid!r} was interrupted")
            raise
        finally:
            if failure is not None:
                record.state, record.error = "error", failure.message
                slot.failure = failure
                replicas, slot.replicas = slot.replicas, []
                await self._stop_replicas(replicas, grace=1.0)
                self._sync(slot)
                if reload:
                    record.state = "unloaded"
                    record.note("reload_failed", failure.message)
                else:
                    self._remove(slot, failure)
            slot.settled.set()

    # --- replicas ---
    def _new_replica(self, slot: Slot, node_id: str | None = None) -> Replica:
        replica = Replica(slot.next_index, node_id)
        slot.next_index += 1
        return replica

    async def _start_replicas(self, slot: Slot, replicas: list[Replica]) -> None:
        """Start ``replicas`` together; the first failure cancels the others and is raised."""
        failures: list[BaseException] = []

        async def start(replica: Replica) -> None:
            try:
                await self._start_replica(slot, replica)
            except Exception as exc:
                failures.append(exc)
                tg.cancel_scope.cancel()

        async with anyio.create_task_group() as tg:
            for replica in replicas:
                tg.start_soon(start, replica)
        if failures:
            raise failures[0]

    async def _start_replica(self, slot: Slot, replica: Replica) -> None:
        """Spawn one runner of the model and wait until it has loaded (raises why it did not)."""
        record, plan, state = slot.record, slot.plan, replica.record
        assert plan is not None
        try:
            with replica.scope:
                load = p.LoadSpec(
                    uid=record.uid,
                    engine=plan.engine,
                    family=plan.family,
                    spec=plan.spec,
                    quantization=plan.quantization,
                    params=dict(plan.params),
                    path=plan.path or "",
                    protocol=p.PROTOCOL_VERSION,
                )
                runner = await self._spawn(record, load, plan, slot.python, replica)
                replica.runner = runner
                state.pid, state.node = runner.pid, runner.handle.node
                state.node_id = runner.handle.node_id
                self._sync(slot)
                runner.on_progress = partial(self._on_progress, record)
                runner.on_death = partial(self._on_death, slot, replica)
                runner.on_unresponsive = partial(self._on_unresponsive, slot, replica)
                runner.on_responsive = partial(self._on_responsive, slot, replica)
                ready = await runner.wait_ready()
                record.context_length, record.abilities = ready.context_length, ready.abilities
                state.state, state.error = "ready", None
            if replica.scope.cancelled_caught:
                raise LaunchError(f"the start of a replica of {record.uid!r} was cancelled")
        finally:
            replica.started.set()

    async def _stop_replicas(self, replicas: list[Replica], grace: float) -> None:
        """Stop runners (a start in progress is cancelled first, so none is left behind)."""
        for replica in replicas:
            replica.record.state = "stopping"  # its death now is no loss
            replica.scope.cancel()

        async def stop(replica: Replica) -> None:
            await replica.started.wait()
            if replica.runner is not None:
                await replica.runner.terminate(grace=grace)

        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for replica in replicas:
                    tg.start_soon(stop, replica)

    def _sync(self, slot: Slot) -> None:
        """The record's view of its replicas; a started model's state follows theirs."""
        record = slot.record
        record.replicas = [replica.record for replica in slot.replicas]
        first = record.replicas[0] if record.replicas else None
        record.pid = first.pid if first else None
        record.node, record.node_id = (first.node, first.node_id) if first else (None, None)
        record.restarts = max(record.restarts, sum(r.restarts for r in record.replicas))
        if slot.settled.is_set() and record.replicas and record.state in SERVING_STATES:
            record.state, record.error = model_state(record.replicas)

    async def _place(self, request: LaunchRequest, slot: Slot, family: Family | None) -> LaunchPlan:
        """Where and how the model runs: on this machine, or on the first cluster node it fits.
        ``family``: read from the weights (a launch by reference) instead of the catalog's."""
        plan_on = partial(
            plan_launch, request, pm=self._plugins(), catalog=self._get_catalog(), family=family
        )
        cluster = self.cluster
        if cluster is not None:  # each node plans it with its own hardware and environments
            if family is None:
                family = self._get_catalog().get(request.model_name, request.model_type)
            return await anyio.to_thread.run_sync(cluster.plan, request, family)
        if request.node_resources or request.worker_ip not in (None, "127.0.0.1", "localhost"):
            raise InvalidRequest(
                "worker_ip and node_resources place a model on a cluster node; this server runs "
                "every model itself (start it with `modelyard serve --cluster ADDRESS`)",
                param="worker_ip" if request.worker_ip else "node_resources",
            )
        hardware = await anyio.to_thread.run_sync(self._probe)
        # Idle models may be unloaded to make room: admission counts their memory as free.
        spare = demand.reclaimable(self._loaded(exclude=slot))
        free = hardware.memory_available + spare
        return plan_on(hardware=msgspec.structs.replace(hardware, memory_available=free))

    async def _spawn(
        self,
        record: ModelRecord,
        load: p.LoadSpec,
        plan: LaunchPlan,
        python: str | None,
        replica: Replica,
    ) -> RunnerProcess:
        """A replica's runner: a subprocess here, or on a cluster node placed as the plan asks."""
        tg = await self._background.group()
        env = {**self.runner_env, **plan.env, **replica_devices(plan, replica.record.index)}
        max_pending = plan.max_pending or self.max_pending
        if self.cluster is None:
            assert python is not None  # chosen for every local launch
            return await self._runner_for(load, python, env, max_pending)
        from ..cluster import Fetch

        placement = await anyio.to_thread.run_sync(self.cluster.placement, plan, replica.node_id)
        fetch = None
        if not load.path:
            if record.state in LOADING_STATES:  # not when a running model gains a replica
                record.state = "downloading"
            fetch = Fetch(plan.spec, plan.quantization, plan.hub, partial(self._on_fetch, record))
        return await self.cluster.spawn(
            load,
            tg=tg,
            env=env,
            placement=placement,
            max_pending=max_pending,
            heartbeat_timeout=self.heartbeat_timeout,
            fetch=fetch,
        )

    def _on_fetch(self, record: ModelRecord, stage: FetchStage, progress: float) -> None:
        if record.state in LOADING_STATES:
            record.state, record.progress = stage, progress

    async def _runner_for(
        self, load: p.LoadSpec, python: str, env: dict[str, str], max_pending: int
    ) -> RunnerProcess:
        """A runner loading ``load``: this engine's warm runner when one waits, else a new one;
        either way a warm runner is started behind it for the next launch (see ``warm.py``)."""
        tg = await self._background.group()
        key = warm_key(load.engine, python, env)
        runner = await self.warm.take(key)
        if runner is None:
            runner = await RunnerProcess.spawn(
                load, tg=tg, python=python, env=env, heartbeat_timeout=self.heartbeat_timeout
            )
        else:
            log.info("%s: loading in warm runner %d", load.uid, runner.pid)
            await runner.load(load)
        runner.max_pending = max_pending
        self.warm.refill(key, tg, self.heartbeat_timeout)
        return runner

    async def _interpreter(self, record: ModelRecord, plan: LaunchPlan) -> str:
        """The engine environment's interpreter (else the server's); for a family that needs extra
        packages, the interpreter of its layer on that environment, built on first use."""
        store = EnvStore()
        python = store.interpreter(plan.engine)
        virtualenv = plan.family.virtualenv
        if virtualenv is None or not virtualenv.packages:
            return python
        from ..envs.models import model_interpreter

        record.state, record.progress = "installing", 0.0
        say = partial(log.info, "%s: %s", record.uid)
        return await anyio.to_thread.run_sync(
            model_interpreter, store, python, virtualenv.packages, say, abandon_on_cancel=True
        )

    async def _download(self, record: ModelRecord, plan: LaunchPlan) -> Path:
        if self._resolve is not None:
            resolve = self._resolve
        else:
            from ..hub import resolve

        def progress(value: float) -> None:
            record.progress = value  # called from the download thread; a float store is atomic

        call = partial(resolve, plan.spec, plan.quantization, progress=progress)
        if plan.hub is not None:
            call = partial(call, hub=plan.hub)
        return await anyio.to_thread.run_sync(call, abandon_on_cancel=True)

    def _on_progress(self, record: ModelRecord, stage: str, progress: float) -> None:
        if record.state in LOADING_STATES:
            record.progress = progress

    def _on_unresponsive(self, slot: Slot, replica: Replica, cause: str) -> None:
        state = replica.record
        if state.state != "ready" or slot.record.state not in SERVING_STATES:
            return
        log.error("model %s%s: %s", slot.record.uid, _which(slot, replica), cause)
        state.state, state.error = "unresponsive", cause
        self._sync(slot)
        if slot.plan is not None and slot.plan.restart_unresponsive:
            self._background.start_soon(self._restart, slot, replica)

    def _on_responsive(self, slot: Slot, replica: Replica) -> None:
        state = replica.record
        if state.state == "unresponsive":
            log.warning("model %s%s answers again", slot.record.uid, _which(slot, replica))
            state.state, state.error = "ready", None
            self._sync(slot)

    async def _restart(self, slot: Slot, replica: Replica, why: str = "unresponsive") -> None:
        """Stop a hung (or dead) replica's runner and load the model into a new one (loading →
        ready); on a cluster, on whichever node can take it now. The other replicas keep serving."""
        record, state, old = slot.record, replica.record, replica.runner
        if record.state not in SERVING_STATES or replica not in slot.replicas:
            return  # terminated or unloaded meanwhile
        log.warning(
            "model %s%s: restarting its %s runner %s",
            record.uid,
            _which(slot, replica),
            why,
            state.pid,
        )
        # A fresh scope: stopping the model during the restart cancels this one, as for a launch.
        replica.scope, replica.started, replica.runner = anyio.CancelScope(), anyio.Event(), None
        replica.node_id = None
        self._forget(slot, replica)
        state.state, state.error, state.restarts = "loading", None, state.restarts + 1
        self._sync(slot)
        if old is not None:
            await old.terminate(grace=0)
        try:
            await self._start_replica(slot, replica)
        except Exception as exc:
            message = exc.message if isinstance(exc, ModelyardError) else format_exception(exc)
            log.error(
                "model %s%s: the restart failed: %s", record.uid, _which(slot, replica), message
            )
            if state.state != "stopping":
                state.state, state.error = "error", message
            if replica.runner is not None:
                await replica.runner.terminate(grace=1.0)
        finally:
            self._sync(slot)

    def _on_death(self, slot: Slot, replica: Replica, cause: str) -> None:
        state = replica.record
        # Deaths while loading are launch failures; deaths of stopping replicas are expected.
        if state.state not in ("ready", "unresponsive") or slot.record.state not in SERVING_STATES:
            return
        log.error("model %s%s: %s", slot.record.uid, _which(slot, replica), cause)
        state.state, state.error = "error", cause
        self._forget(slot, replica)
        self._sync(slot)
        plan = slot.plan
        if plan is not None and plan.restart_lost and state.restarts < MAX_RELAUNCHES:
            self._background.start_soon(self._restart, slot, replica, "lost")

    def _forget(self, slot: Slot, replica: Replica) -> None:
        """A replica's prompt cache is gone with its runner: route no prefix to it for that."""
        if slot.router is not None:
            slot.router.forget(replica.name)

    def _remove(self, slot: Slot, failure: ModelyardError | None) -> None:
        uid = slot.record.uid
        if self._slots.get(uid) is slot:
            del self._slots[uid]
        if failure is not None:
            self._failures[uid] = failure.message
            while len(self._failures) > 64:
                self._failures.popitem(last=False)
        slot.gone.set()

    # --- managing ---
    def nodes(self) -> list[dict[str, Any]]:
        """Where runners can run: the cluster's live nodes, or this machine. Blocking (Ray calls)."""
        if self.cluster is not None:
            return self.cluster.nodes()
        hardware = self._probe()
        resources = {"CPU": float(hardware.cpu_count), "memory": float(hardware.memory_total)}
        if hardware.accelerators:
            resources["GPU"] = float(len(hardware.accelerators))
        available = {**resources, "memory": float(hardware.memory_available)}
        return [
            {
                "node_id": None,
                "address": "127.0.0.1",
                "resources": resources,
                "available": available,
            }
        ]

    def list(self) -> list[ModelRecord]:
        return [snapshot(s.record) for s in self._slots.values()]

    def get(self, uid: str) -> ModelRecord:
        return snapshot(self._slot(uid).record)

    def progress(self, uid: str) -> dict[str, Any]:
        return self._slot(uid).record.progress_dict()

    async def logs(self, uid: str, lines: int) -> tuple[str, ...]:
        """The last ``lines`` lines its runners wrote (none before a runner started); with
        several replicas, each one's lines under its name."""
        slot = self._slot(uid)
        running = [r for r in slot.replicas if r.runner is not None]
        if len(running) == 1 and running[0].runner is not None:
            return await running[0].runner.handle.recent(lines)
        found: list[str] = []
        for replica in running:
            if replica.runner is not None:
                tail = await replica.runner.handle.recent(lines)
                found += [f"[replica {replica.name}] {line}" for line in tail]
        return tuple(found)

    async def cancel(self, uid: str) -> None:
        """Cancel a launch in progress; the launch's waiter gets a LaunchError."""
        slot = self._slot(uid)
        if slot.settled.is_set():
            raise InvalidRequest(
                f"model {uid!r} is not launching (state {slot.record.state}); terminate it instead"
            )
        slot.cancel_launch()
        await slot.settled.wait()

    async def terminate(self, uid: str) -> None:
        """Stop the model's runner (Shutdown, then SIGTERM/SIGKILL) and forget it."""
        slot = self._slot(uid)
        if not slot.settled.is_set():
            slot.cancel_launch()
            await slot.settled.wait()
            if self._slots.get(uid) is slot:  # a cancelled reload keeps its record: drop it too
                self._remove(slot, None)
            return
        if slot.record.state == "terminating":
            await slot.gone.wait()
            return
        if slot.record.state == "unloading":
            await slot.unloaded.wait()
        slot.record.state = "terminating"
        try:
            await self._stop_replicas(slot.replicas, grace=self.terminate_grace)
        finally:
            self._remove(slot, None)

    def _slot(self, uid: str) -> Slot:
        slot = self._slots.get(uid)
        if slot is not None:
            return slot
        if uid in self._failures:
            raise ModelNotFound(
                f"model {uid!r} is not running: its launch failed: {self._failures[uid]}"
            )
        running = ", ".join(sorted(self._slots)) or "none"
        raise ModelNotFound(
            f"model {uid!r} is not running (running: {running}); launch it first", param="model"
        )

    # --- serving ---
    def _replica(self, uid: str, request: object = None) -> Replica:
        """The replica that serves a request now (503 while none can, 429 when it is full)."""
        slot = self._slot(uid)
        record = slot.record
        require_ready(record)
        serving = [r for r in slot.replicas if r.serving]
        if not serving:  # a ready record whose replicas are all stopping: it is going away
            raise Unavailable(f"model {uid!r} is being terminated")
        chosen = serving[0]
        if len(serving) > 1:
            if slot.router is None:
                slot.router = ReplicaRouter()
            loads = {r.name: r.in_flight() for r in serving}
            name = slot.router.choose(loads, prompt_text(request))
            chosen = next(r for r in serving if r.name == name)
        assert chosen.runner is not None
        chosen.runner.check_capacity(uid)
        return chosen

    def chat(
        self, uid: str, request: ChatCompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]:
        """Chunks of a chat completion. Errors about the model itself (unknown, loading, dead,
        overloaded) are raised here, before iteration; engine errors on the first iteration.
        ``request_id`` (else the body's ``request_id``, else a new one) is what ``abort`` takes."""
        request = _with_thinking(request, self._slot(uid).enable_thinking)
        return self._stream(uid, "chat", request, request_id)

    def complete(
        self, uid: str, request: CompletionRequest, *, request_id: str | None = None
    ) -> AsyncIterator[Chunk]:
        return self._stream(uid, "complete", request, request_id)

    def _stream(
        self,
        uid: str,
        op: p.Op,
        request: ChatCompletionRequest | CompletionRequest,
        request_id: str | None,
    ) -> AsyncIterator[Chunk]:
        slot = self._slot(uid)
        keep_alive = self._keep_alive_of(slot, request)  # a bad one: 400 whatever the state
        replica = self._replica(uid, request)
        assert replica.runner is not None
        rid = request_id or request.request_id or uuid.uuid4().hex
        # The engine sees the id (vLLM and llama.cpp name their work by it); keep_alive is ours.
        request = msgspec.structs.replace(request, request_id=rid, keep_alive=None)
        source = replica.runner.stream(uid, op, request, timeout=self._timeout(uid), request_id=rid)
        release = self._hold(slot, replica)
        return demand.Held(source, lambda: release(keep_alive))

    async def embed(
        self, uid: str, request: EmbeddingRequest, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._call(uid, "embed", request, request_id)

    async def rerank(
        self, uid: str, request: RerankRequest, *, request_id: str | None = None
    ) -> dict[str, Any]:
        return await self._call(uid, "rerank", request, request_id)

    async def _call(
        self,
        uid: str,
        op: p.Op,
        request: EmbeddingRequest | RerankRequest,
        request_id: str | None,
    ) -> dict[str, Any]:
        slot = self._slot(uid)
        keep_alive = self._keep_alive_of(slot, request)  # a bad one: 400 whatever the state
        replica = self._replica(uid)
        assert replica.runner is not None
        request = msgspec.structs.replace(request, keep_alive=None)
        release = self._hold(slot, replica)
        try:
            return await replica.runner.call(
                uid, op, request, timeout=self._timeout(uid), request_id=request_id
            )
        finally:
            release(keep_alive)

    def _timeout(self, uid: str) -> float | None:
        return self._slot(uid).record.request_timeout or self.request_timeout

    # --- collaborators, resolved lazily so that tests can inject them ---
    def _plugins(self) -> PluginManager:
        if self._pm is None:
            self._pm = get_plugin_manager()
        return self._pm

    def _get_catalog(self) -> CatalogLike:
        if self._catalog is None:
            from ..catalog import get_catalog

            self._catalog = get_catalog()
        return self._catalog

    def _probe(self) -> Hardware:
        if self._hardware is None:
            from ..resources import probe_hardware

            self._hardware = probe_hardware
        return self._hardware()


def _which(slot: Slot, replica: Replica) -> str:
    """How logs name a replica: nothing for a model with one."""
    return f" (replica {replica.name})" if len(slot.replicas) > 1 else ""


def _is_remote(source: str) -> bool:
    from ..references import is_remote  # imported on use: runner processes import this package

    return is_remote(source)


def _with_thinking(request: ChatCompletionRequest, default: bool | None) -> ChatCompletionRequest:
    """Put ``enable_thinking`` where chat templates read it (``chat_template_kwargs``): the
    request's own top-level flag, else the launch's default; an explicit template kwarg wins."""
    kwargs = request.chat_template_kwargs or {}
    wanted = request.enable_thinking if request.enable_thinking is not None else default
    if wanted is None or "enable_thinking" in kwargs:
        return request
    return msgspec.structs.replace(
        request, chat_template_kwargs={**kwargs, "enable_thinking": wanted}
    )
