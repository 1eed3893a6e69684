"""What the manager knows about one launched model, as the API and the CLI show it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from ..errors import ModelyardError
from ..specs import Family, ModelSpec, ModelType

if TYPE_CHECKING:
    from .planning import LaunchPlan
    from .process import RunnerProcess

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
# installing: building the model's own environment layer (its family's virtualenv packages).
LAUNCHING: frozenset[str] = frozenset({"creating", "downloading", "installing", "loading"})
# unloaded: idle (keep_alive) or evicted; the runner is gone, the next request loads it again.
MAX_EVENTS = 50


class Event(msgspec.Struct, kw_only=True):
    """One lifecycle decision about a model (loaded, unloaded for idleness, evicted...), with why."""

    at: float
    event: str
    reason: str


class ModelRecord(msgspec.Struct, kw_only=True):
    """One model's state. ``error`` says why when ``state`` is "error" (e.g. the runner died) or
    "unresponsive" (its runner stopped answering the heartbeat); ``progress`` (0..1) belongs to the
    current stage (downloading, loading). ``restarts`` counts relaunches after a hang.

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

    def note(self, event: str, reason: str) -> None:
        self.events.append(Event(at=time.time(), event=event, reason=reason))
        del self.events[:-MAX_EVENTS]

    def progress_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "state": self.state,
            "progress": self.progress,
            "error": self.error,
        }


def snapshot(record: ModelRecord) -> ModelRecord:
    """A copy for callers (events included): only the manager changes records."""
    return msgspec.structs.replace(record, events=list(record.events))


class Slot:
    """A record plus what the manager needs to drive it (internal to the manager)."""

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        self.runner: RunnerProcess | None = None
        self.failure: ModelyardError | None = None
        self.settled = anyio.Event()  # the launch finished, either way
        self.gone = anyio.Event()  # removed from the manager
        self.scope = anyio.CancelScope()  # cancels the launch
        self.planning: anyio.CancelScope | None = None  # a background launch's planning (download)
        self.enable_thinking: bool | None = None  # the launch's default for chat requests
        self.plan: LaunchPlan | None = None  # with its local path, to restart a hung runner
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
