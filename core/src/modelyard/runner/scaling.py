"""Scaling a running model: more replicas (placed like a launch's), or fewer (drained, then stopped).

A mixin over ``ModelManager``'s state, like ``OnDemand``. New replicas load while the others keep
serving and take requests once ready; a replica being removed takes no new request and stops once
its requests in flight have ended (or after ``drain_timeout``, when they end with 503).
"""

from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING

import anyio
import msgspec

from ..errors import Conflict, InvalidRequest, LaunchError, NotFound
from ..resources import check_fit, times
from .records import ModelRecord, Slot, snapshot
from .replicas import Replica, victims

if TYPE_CHECKING:
    from ..cluster import RayCluster
    from ..specs import Hardware

log = logging.getLogger("modelyard.manager")

DRAIN_TIMEOUT = 60.0  # seconds a removed replica may finish its requests before it is stopped
SCALABLE = frozenset({"ready", "loading", "unresponsive", "error"})


class Scaling:
    """Methods ``ModelManager`` gets for replicas of a running model (see the module docstring)."""

    cluster: RayCluster | None
    terminate_grace: float

    if TYPE_CHECKING:

        def _slot(self, uid: str) -> Slot: ...
        def _probe(self) -> Hardware: ...
        def _new_replica(self, slot: Slot, node_id: str | None = None) -> Replica: ...
        async def _start_replicas(self, slot: Slot, replicas: list[Replica]) -> None: ...
        async def _stop_replicas(self, replicas: list[Replica], grace: float) -> None: ...
        def _sync(self, slot: Slot) -> None: ...
        def _forget(self, slot: Slot, replica: Replica) -> None: ...

    async def scale(
        self, uid: str, replica: int, *, drain_timeout: float = DRAIN_TIMEOUT
    ) -> ModelRecord:
        """Run ``replica`` replicas of model ``uid``: start the missing ones, or drain and stop
        the surplus (broken ones first, then the least busy). An unloaded model keeps the count
        for its next load."""
        if isinstance(replica, bool) or replica < 1:
            raise InvalidRequest(
                f"replica must be at least 1, got {replica!r}; terminate the model to stop it",
                param="replica",
            )
        slot = self._slot(uid)
        async with slot.scaling:
            record = slot.record
            current = len(slot.replicas)
            if record.state == "unloaded":
                record.replica = replica
                record.note("scaled", f"{replica} replicas at the next load")
            elif record.state not in SCALABLE or not slot.settled.is_set():
                raise Conflict(
                    f"model {uid!r} is {record.state}; scale it once it has loaded",
                    param="replica",
                )
            elif replica > current:
                await self._add(slot, replica - current)
            elif replica < current:
                await self._drop(slot, victims(slot.replicas, current - replica), drain_timeout)
        return snapshot(slot.record)

    async def add_replicas(self, uid: str, count: int = 1) -> ModelRecord:
        """Xinference's ``add_model_replica``: ``count`` more replicas."""
        if isinstance(count, bool) or count < 1:
            raise InvalidRequest(f"replica must be at least 1, got {count!r}", param="replica")
        return await self.scale(uid, len(self._slot(uid).replicas) + count)

    async def remove_replica(
        self, uid: str, index: int, *, drain_timeout: float = DRAIN_TIMEOUT
    ) -> ModelRecord:
        """Xinference's ``terminate_model_replica``: drain and stop replica ``index``."""
        slot = self._slot(uid)
        async with slot.scaling:
            found = [r for r in slot.replicas if r.record.index == index]
            names = ", ".join(r.name for r in slot.replicas) or "none"
            if not found:
                raise NotFound(
                    f"model {uid!r} has no replica {index} (its replicas: {names})",
                    param="replica_id",
                )
            if len(slot.replicas) == 1:
                raise InvalidRequest(
                    f"replica {index} is the last one of model {uid!r}; terminate the model instead",
                    param="replica_id",
                )
            await self._drop(slot, found, drain_timeout)
        return snapshot(slot.record)

    async def _add(self, slot: Slot, count: int) -> None:
        record = slot.record
        fresh = [self._new_replica(slot, node) for node in await self._place_more(slot, count)]
        slot.replicas += fresh
        record.replica = len(slot.replicas)
        self._sync(slot)
        log.info("model %s: starting %d more replica(s)", record.uid, count)
        try:
            await self._start_replicas(slot, fresh)
        except BaseException as exc:
            slot.replicas = [r for r in slot.replicas if r not in fresh]
            record.replica = len(slot.replicas)
            await self._stop_replicas(fresh, grace=1.0)
            self._sync(slot)
            if isinstance(exc, Exception):
                record.note("scale_failed", str(getattr(exc, "message", exc)))
            raise
        record.note("scaled", f"{count} replica(s) added: {record.replica} now")

    async def _place_more(self, slot: Slot, count: int) -> list[str | None]:
        """Nodes for ``count`` new replicas (a cluster plans them beside the existing ones); here,
        a check that the memory holds them."""
        plan, request = slot.plan, slot.request
        assert plan is not None
        cluster = self.cluster
        if cluster is not None and request is not None:
            wanted = msgspec.structs.replace(request, replica=count)
            occupied = collections.Counter(
                r.record.node_id for r in slot.replicas if r.record.node_id is not None
            )
            more = await anyio.to_thread.run_sync(cluster.plan, wanted, plan.family, occupied)
            return list(more.node_ids)
        if plan.estimate is not None:  # scaling up never unloads other models to make room
            hardware = await anyio.to_thread.run_sync(self._probe)
            try:
                check_fit(times(plan.estimate, count), hardware)
            except LaunchError as exc:
                raise LaunchError(
                    f"{count} more replica(s) of {slot.record.uid}: {exc.message}",
                    param="replica",
                    code="insufficient_memory",
                ) from None
        return [None] * count

    async def _drop(self, slot: Slot, leaving: list[Replica], drain_timeout: float) -> None:
        record = slot.record
        for replica in leaving:
            slot.replicas.remove(replica)
            self._forget(slot, replica)
            replica.record.state = "stopping"  # no new request; those in flight may finish
        record.replica = len(slot.replicas)
        self._sync(slot)
        names = ", ".join(r.name for r in leaving)
        log.info("model %s: draining replica(s) %s", record.uid, names)
        try:
            with anyio.move_on_after(drain_timeout):
                while any(r.record.in_flight for r in leaving):
                    await anyio.sleep(0.05)
        finally:
            await self._stop_replicas(leaving, grace=self.terminate_grace)
        record.note("scaled", f"replica(s) {names} stopped: {record.replica} now")
