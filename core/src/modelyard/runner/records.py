"""What the manager knows about one launched model, as the API and the CLI show it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from ..errors import ModelyardError
from ..specs import Family, ModelSpec, ModelType

if TYPE_CHECKING:
    from ..specs import LaunchRequest
    from .planning import LaunchPlan
    from .replicas import Replica
    from .routing import ReplicaRouter

RecordState = Literal[
    "creating",
    "downloading",
    "installing",
    "loading",
    "ready",
    "unresponsive",
    "error",
    "terminating",
    "unloading",
    "unloaded",
]
# unloaded: idle (keep_alive) or evicted; the runner is gone, the next request loads it again.
MAX_EVENTS = 50
# A replica's own state: a model is ready while one of its replicas is.
ReplicaState = Literal["loading", "ready", "unresponsive", "error", "stopping"]


class Event(msgspec.Struct, kw_only=True):
    """One lifecycle decision about a model (loaded, unloaded for idleness, evicted...), with why."""

    at: float
    event: str
    reason: str


class ReplicaRecord(msgspec.Struct, kw_only=True):
    """One runner of a model: a model launched with ``replica=N`` has N, each on its own node in a
    cluster. ``error`` says why it is in state "error" or "unresponsive"."""

    index: int  # its id within the model, never reused while the model lives
    state: ReplicaState = "loading"
    pid: int | None = None
    node: str | None = None  # the cluster node's address (None: this machine)
    node_id: str | None = None
    error: str | None = None
    in_flight: int = 0
    restarts: int = 0


class ModelRecord(msgspec.Struct, kw_only=True):
    """One model's state. ``error`` says why when ``state`` is "error" (e.g. the runner died) or
    "unresponsive" (its runner stopped answering the heartbeat); ``progress`` (0..1) belongs to the
    current stage (downloading, loading). ``restarts`` counts relaunches after a hang or a loss.

    Replicas: ``replica`` is how many runners the model should have, ``replicas`` each one's state
    and place; ``pid``/``node``/``node_id`` are the first replica's (what single-runner callers
    read). The model is "ready" while any replica is.

    Models on demand: ``keep_alive`` (seconds, None: forever) is how long the model stays loaded
    after its last request; ``last_used`` (epoch seconds) orders eviction; ``events`` lists the
    latest load, unload and eviction decisions with their reasons; ``loads`` counts loads."""

    uid: str
    model_name: str
    model_type: ModelType = "LLM"
    family: Family | None = None
    spec: ModelSpec | None = None
    quantization: str | None = None
    engine: str | None = None
    state: RecordState = "creating"
    progress: float = 0.0
    error: str | None = None
    pid: int | None = None
    node: str | None = None  # the cluster node its runner runs on (None: this machine)
    node_id: str | None = None
    context_length: int | None = None
    abilities: tuple[str, ...] = ()
    params: dict[str, Any] = {}
    created: float = 0.0
    request_timeout: float | None = None
    restarts: int = 0
    engine_reason: str | None = None
    keep_alive: float | None = None
    last_used: float = 0.0
    in_flight: int = 0
    loads: int = 0
    events: list[Event] = []
    memory_estimate: int | None = None  # bytes, the engine's estimate the launch was admitted on
    replica: int = 1
    replicas: list[ReplicaRecord] = []

    def note(self, event: str, reason: str) -> None:
        self.events.append(Event(at=time.time(), event=event, reason=reason))
        del self.events[:-MAX_EVENTS]

    def progress_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "state": self.state,
            "progress": self.progress,
            "error": self.error,
            # Xinference's per-replica progress (its clients read replica_model_uid and stage).
            "replicas": [
                {
                    "replica_id": replica.index,
                    "replica_model_uid": f"{self.uid}-{replica.index}",
                    "stage": replica.state,
                    "progress": 1.0 if replica.state == "ready" else self.progress,
                }
                for replica in self.replicas
            ],
        }


def snapshot(record: ModelRecord) -> ModelRecord:
    """A copy for callers (events and replicas included): only the manager changes records."""
    replicas = [msgspec.structs.replace(r) for r in record.replicas]
    return msgspec.structs.replace(record, events=list(record.events), replicas=replicas)


class Slot:
    """A record plus what the manager needs to drive it (internal to the manager)."""

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        self.replicas: list[Replica] = []  # its runners; empty before loading and when unloaded
        self.router: ReplicaRouter | None = None  # made when a second replica starts
        self.next_index = 0  # the index the next replica gets
        self.scaling = anyio.Lock()  # one scale operation at a time
        self.failure: ModelyardError | None = None
        self.settled = anyio.Event()  # the launch finished, either way
        self.gone = anyio.Event()  # removed from the manager
        self.scope = anyio.CancelScope()  # cancels the launch
        self.planning: anyio.CancelScope | None = None  # a background launch's planning (download)
        self.enable_thinking: bool | None = None  # the launch's default for chat requests
        self.plan: LaunchPlan | None = None  # with its local path, to restart a hung runner
        self.python: str | None = None  # the interpreter its local runners start with
        self.request: LaunchRequest | None = None  # as launched: a cluster plans new replicas by it
        self.idle_timer = 0  # bumped by every use: an idle unload scheduled before it is stale
        self.on_demand = False  # loading because a request asked: requests wait for it (bounded)
        self.waiters = 0  # requests waiting for this model to load
        self.unloaded = anyio.Event()  # set when an unload in progress has finished

    def cancel_launch(self) -> None:
        if self.planning is not None:
            self.planning.cancel()
        self.scope.cancel()

    @property
    def idle(self) -> bool:
        """Loaded with nothing in flight or waiting: the only kind of model that may be unloaded."""
        return self.record.state == "ready" and self.record.in_flight == 0 and self.waiters == 0

    @property
    def dead(self) -> bool:
        return self.record.state == "error"
