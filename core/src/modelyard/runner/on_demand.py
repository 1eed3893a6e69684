"""The models-on-demand half of ``ModelManager``: idle unload (keep_alive), eviction to make room,
reload and auto-launch on request, request holds, and abort by request id.

A mixin over the manager's own state (its slots, background tasks, launch path): a reload goes
through ``_bring_up`` like any launch, so whatever speeds a launch speeds a reload too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import Conflict, LaunchError, NotFound, RequestAborted, Unavailable
from ..keepalive import describe_keep_alive, parse_keep_alive
from ..specs import LaunchRequest
from . import demand
from .records import ModelRecord, Slot, snapshot

if TYPE_CHECKING:
    from collections import OrderedDict

    from ..specs import Hardware
    from .background import Background
    from .planning import CatalogLike, LaunchPlan
    from .replicas import Replica

log = logging.getLogger("modelyard.manager")


class OnDemand:
    """Methods ``ModelManager`` gets for models on demand (see the module docstring)."""

    keep_alive: float | None  # seconds an idle model stays loaded; None: forever
    max_loaded_models: int | None
    auto_launch: bool
    load_wait: float
    terminate_grace: float
    _slots: dict[str, Slot]
    _failures: OrderedDict[str, str]
    _background: Background
    _room: anyio.Lock  # one eviction decision at a time

    if TYPE_CHECKING:

        async def launch(self, request: LaunchRequest, *, wait_ready: bool = True) -> str: ...
        async def _bring_up(
            self, slot: Slot, plan: LaunchPlan, *, reload: bool = False
        ) -> None: ...
        def _slot(self, uid: str) -> Slot: ...
        async def _stop_replicas(self, replicas: list[Replica], grace: float) -> None: ...
        def _sync(self, slot: Slot) -> None: ...
        def _get_catalog(self) -> CatalogLike: ...
        def _probe(self) -> Hardware: ...

    def _loaded_now(self, slot: Slot, reload: bool) -> None:
        record = slot.record
        record.loads += 1
        record.last_used = time.time()
        what = "reloaded on demand" if reload else "loaded"
        record.note(
            "loaded",
            f"{what} on {record.engine} as runner {record.pid}; "
            f"keep_alive {describe_keep_alive(record.keep_alive)}",
        )
        self._schedule_unload(slot, record.keep_alive)

    def _loaded(self, exclude: Slot | None = None) -> list[demand.Loaded]:
        return [
            demand.Loaded(
                uid=s.record.uid,
                idle=s.idle,
                last_used=s.record.last_used,
                memory=s.plan.estimate.total * s.record.replica
                if s.plan and s.plan.estimate
                else 0,
            )
            for s in self._slots.values()
            if s is not exclude and s.record.state in demand.HOLDS_RUNNER
        ]

    async def _make_room(self, slot: Slot, plan: LaunchPlan) -> None:
        """Unload least-recently-used idle models until ``plan`` fits (count and memory)."""
        estimate = plan.estimate
        async with self._room:
            needed = available = 0
            if estimate is not None and estimate.device == "cpu":
                hardware = await anyio.to_thread.run_sync(self._probe)
                needed = estimate.total * slot.record.replica
                available = hardware.memory_available
            room = demand.make_room(
                self._loaded(exclude=slot),
                for_uid=slot.record.uid,
                max_loaded=self.max_loaded_models,
                needed=needed,
                available=available,
            )
            if room.refusal is not None:
                log.warning("model %s: %s", slot.record.uid, room.refusal)
                slot.record.note("load_refused", room.refusal)
                raise Unavailable(room.refusal, code="no_room", retry_after=5)
            for uid, reason in room.evict:
                victim = self._slots.get(uid)
                if victim is not None:
                    await self._unload(victim, "evicted", reason)
                    slot.record.note("made_room", f"unloaded {uid} to load this model")

    async def _unload(self, slot: Slot, event: str, reason: str) -> None:
        """Stop an idle model's runners; the record stays, as "unloaded", for a reload."""
        record = slot.record
        if record.state not in ("ready", "unresponsive") or not slot.replicas:
            return
        log.info("model %s: %s: %s", record.uid, event, reason)
        record.note(event, reason)
        record.state, replicas, slot.replicas = "unloading", slot.replicas, []
        slot.router = None  # the prompt caches go with the runners
        slot.unloaded = anyio.Event()
        try:
            await self._stop_replicas(replicas, grace=self.terminate_grace)
        finally:
            self._sync(slot)
            record.progress = 0.0
            if record.state == "unloading":
                record.state = "unloaded"
            slot.unloaded.set()

    def _schedule_unload(self, slot: Slot, keep_alive: float | None) -> None:
        slot.idle_timer += 1
        if keep_alive is not None:
            self._background.start_soon(self._unload_when_idle, slot, slot.idle_timer, keep_alive)

    async def _unload_when_idle(self, slot: Slot, timer: int, keep_alive: float) -> None:
        await anyio.sleep(keep_alive)
        if slot.idle_timer == timer and slot.idle and self._slots.get(slot.record.uid) is slot:
            reason = f"idle for {keep_alive:g} s (keep_alive {describe_keep_alive(keep_alive)})"
            await self._unload(slot, "unloaded", reason)

    def _begin_reload(self, slot: Slot) -> None:
        record = slot.record
        assert slot.plan is not None
        log.info("model %s: reloading on demand", record.uid)
        record.note("reloading", "a request arrived for the unloaded model")
        slot.settled, slot.scope, slot.failure = anyio.Event(), anyio.CancelScope(), None
        slot.on_demand = True
        record.state, record.progress = "loading", 0.0
        plan = slot.plan

        async def reload() -> None:
            await self._bring_up(slot, plan, reload=True)

        self._background.start_soon(reload)

    async def ensure_ready(self, uid: str) -> ModelRecord:
        """The model's record once it can serve: reloads an unloaded model (and, with
        ``auto_launch``, launches a catalog model that is not running), waiting at most
        ``load_wait`` seconds; beyond that a 503 with the progress."""
        await self._background.group()
        slot = self._slots.get(uid)
        if slot is None and self.auto_launch:
            slot = await self._launch_on_request(uid)
        slot = slot or self._slot(uid)
        if slot.record.state == "unloading":
            await slot.unloaded.wait()
        if slot.record.state == "unloaded":
            self._begin_reload(slot)
        if slot.on_demand and not slot.settled.is_set():
            slot.waiters += 1
            try:
                with anyio.move_on_after(self.load_wait):
                    await slot.settled.wait()
            finally:
                slot.waiters -= 1
            record = slot.record
            if not slot.settled.is_set():
                raise Unavailable(
                    f"model {uid!r} is loading on demand ({record.state}, {record.progress:.0%} "
                    f"done) and was not ready within {self.load_wait:g} s; retry shortly",
                    code="model_loading",
                    retry_after=5,
                )
            if slot.failure is not None:
                raise slot.failure
        return snapshot(slot.record)

    async def _launch_on_request(self, name: str) -> Slot:
        """``auto_launch``: launch the catalog model ``name`` under uid ``name``, on its first spec
        (catalog order: packaged and local weights first) that an engine here can run."""
        from ..catalog.store import describe_spec  # the catalog loads when a launch happens

        family = self._get_catalog().get(name)
        log.info("model %s: launching on request (--auto-launch)", name)
        refusals: list[str] = []
        for spec in family.model_specs:
            request = LaunchRequest(
                model_name=name,
                model_type=family.model_type,
                model_uid=name,
                model_format=spec.model_format,
                model_size_in_billions=spec.model_size_in_billions,
                quantization=spec.quantizations[0],
            )
            try:
                await self.launch(request, wait_ready=False)
            except Conflict:  # a concurrent request launched it first
                break
            except LaunchError as exc:  # no engine here for this spec, or it does not fit
                refusals.append(f"- {describe_spec(spec)}: {exc.message}")
                continue
            break
        else:
            raise LaunchError(
                f"--auto-launch found no spec of {name} that can run here:\n" + "\n".join(refusals)
            )
        slot = self._slot(name)
        if not slot.settled.is_set():
            slot.on_demand = True
            slot.record.note("launching", "a request named it and --auto-launch is on")
        return slot

    def _hold(self, slot: Slot, replica: Replica) -> Callable[[float | None], None]:
        """Count one request in flight on ``slot`` and the replica serving it; the returned
        function releases it, then schedules the idle unload after ``keep_alive`` (the request's,
        else the model's)."""
        record = slot.record
        record.in_flight += 1
        replica.record.in_flight += 1
        slot.idle_timer += 1  # any unload scheduled before this request is stale now

        def release(keep_alive: float | None) -> None:
            record.in_flight -= 1
            replica.record.in_flight -= 1
            record.last_used = time.time()
            if record.in_flight == 0 and record.state == "ready":
                self._schedule_unload(slot, keep_alive)

        return release

    def _keep_alive_of(self, slot: Slot, request: Any) -> float | None:
        raw = getattr(request, "keep_alive", None)
        return slot.record.keep_alive if raw is None else parse_keep_alive(raw)

    def abort(self, uid: str, request_id: str) -> dict[str, str]:
        """End the request ``request_id`` in flight on model ``uid`` (Xinference's abort)."""
        slot = self._slot(uid)
        error = RequestAborted(f"request {request_id!r} was aborted")
        runners = [r.runner for r in slot.replicas if r.runner is not None]
        if not any(runner.abort(request_id, error) for runner in runners):
            raise NotFound(
                f"no request {request_id!r} is in flight on model {uid!r}; the id is the "
                "X-Request-Id header or the request_id field the request was sent with",
                param="request_id",
                code="request_not_found",
            )
        log.info("model %s: request %s aborted", uid, request_id)
        return {"msg": "DONE"}
