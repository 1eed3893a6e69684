"""A model's lifecycle states, and the 503 each one answers to an inference request.

The server checks a record before it asks the manager, and the manager checks again when it picks a
replica (the state may change in between); both say the same thing through ``require_ready``.
"""

from __future__ import annotations

from typing import Protocol

from .errors import Unavailable

LOADING_STATES: frozenset[str] = frozenset({"creating", "downloading", "installing", "loading"})
# Seconds a client should wait before asking again about a model that is still loading.
LOADING_RETRY_AFTER = 5


class StateView(Protocol):
    @property
    def uid(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def progress(self) -> float: ...
    @property
    def error(self) -> str | None: ...


def require_ready(record: StateView) -> None:
    """Inference needs a ready model: loading is a 503 to retry, a failed one a 503 with its cause."""
    if record.state == "ready":
        return
    if record.state in LOADING_STATES:
        raise Unavailable(
            f"model {record.uid} is {record.state} ({record.progress:.0%} done); retry when it is ready",
            retry_after=LOADING_RETRY_AFTER,
        )
    if record.state in ("unloading", "unloaded"):
        raise Unavailable(
            f"model {record.uid} is {record.state} (idle); retry and it is loaded again",
            code="model_unloaded",
            retry_after=1,
        )
    if record.state == "unresponsive":
        raise Unavailable(
            f"model {record.uid} is unresponsive: {record.error}; wait for it, terminate it, or "
            "launch it with restart_unresponsive=true",
            code="model_unresponsive",
            retry_after=LOADING_RETRY_AFTER,
        )
    cause = f": {record.error}" if record.error else ""
    raise Unavailable(
        f"model {record.uid} is not serving (state {record.state}){cause}; terminate and relaunch it",
        code="model_unavailable",
    )
