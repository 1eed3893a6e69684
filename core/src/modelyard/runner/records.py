"""What the manager knows about one launched model, as the API and the CLI show it."""

from __future__ import annotations

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
]
# installing: building the model's own environment layer (its family's virtualenv packages).
LAUNCHING: frozenset[str] = frozenset({"creating", "downloading", "installing", "loading"})


class ModelRecord(msgspec.Struct, kw_only=True):
    """One model's state. ``error`` says why when ``state`` is "error" (e.g. the runner died) or
    "unresponsive" (its runner stopped answering the heartbeat); ``progress`` (0..1) belongs to the
    current stage (downloading, loading). ``restarts`` counts relaunches after a hang."""

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
    memory_estimate: int | None = None  # bytes, the engine's estimate the launch was admitted on

    def progress_dict(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "state": self.state,
            "progress": self.progress,
            "error": self.error,
        }


class Slot:
    """A record plus what the manager needs to drive it (internal to the manager)."""

    def __init__(self, record: ModelRecord) -> None:
        self.record = record
        self.runner: RunnerProcess | None = None
        self.failure: ModelyardError | None = None
        self.settled = anyio.Event()  # the launch finished, either way
        self.gone = anyio.Event()  # removed from the manager
        self.scope = anyio.CancelScope()  # cancels the launch
        self.enable_thinking: bool | None = None  # the launch's default for chat requests
        self.plan: LaunchPlan | None = None  # with its local path, to restart a hung runner

    @property
    def dead(self) -> bool:
        return self.record.state == "error"
