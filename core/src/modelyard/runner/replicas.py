"""A model's replicas: N runners behind one uid, and the pure decisions about them.

``ModelManager`` starts a model's replicas together, routes each request to one of them
(``routing.ReplicaRouter``: least loaded, or the one holding the prompt's prefix), relaunches a lost
one on its own, and adds or stops replicas when the model is scaled. The model's own state follows
its replicas': ready while one serves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio

from ..errors import LaunchError
from ..schemas import ChatCompletionRequest, CompletionRequest
from .records import RecordState, ReplicaRecord

if TYPE_CHECKING:
    from .process import RunnerProcess


class Replica:
    """One runner of a model, where it was placed (``node_id``: the cluster node chosen for it)."""

    def __init__(self, index: int, node_id: str | None = None) -> None:
        self.record = ReplicaRecord(index=index)
        self.node_id = node_id
        self.runner: RunnerProcess | None = None
        self.scope = anyio.CancelScope()  # cancels its start (or restart) when the model stops
        self.started = anyio.Event()  # its start settled, either way

    @property
    def name(self) -> str:
        return str(self.record.index)

    @property
    def serving(self) -> bool:
        return self.record.state == "ready" and self.runner is not None

    def in_flight(self) -> int:
        """Requests routed to it and not yet ended (counted when routed, before the runner
        sees them, so that requests arriving together spread)."""
        return self.record.in_flight


def model_state(replicas: Sequence[ReplicaRecord]) -> tuple[RecordState, str | None]:
    """A started model's state and error from its replicas': ready while one is (a relaunch or a
    hang elsewhere does not stop it serving), else loading while one reloads, else unresponsive
    while one may answer again, else error (every replica lost)."""
    states = {r.state for r in replicas}
    for state in ("ready", "loading", "unresponsive"):
        if state in states:
            error = next((r.error for r in replicas if r.state == state), None)
            return state, error if state == "unresponsive" else None
    errors = [r.error for r in replicas if r.error]
    return "error", errors[0] if errors else "no replica is running"


def prompt_text(request: object) -> str:
    """The text a request's prompt starts with, for prefix affinity (empty: route by load only)."""
    if isinstance(request, ChatCompletionRequest):
        parts: list[str] = []
        for message in request.messages:
            content = message.content
            if isinstance(content, str):
                parts.append(f"{message.role}\n{content}\n")
            elif content:
                text = "".join(getattr(part, "text", "") for part in content)
                parts.append(f"{message.role}\n{text}\n")
        return "".join(parts)
    if isinstance(request, CompletionRequest) and isinstance(request.prompt, str):
        return request.prompt
    return ""


def victims(replicas: Sequence[Replica], count: int) -> list[Replica]:
    """Which replicas a scale-down stops: broken ones first, then the least busy, newest first."""
    ranked = sorted(replicas, key=lambda r: (r.serving, r.in_flight(), -r.record.index))
    return ranked[:count]


def assign_nodes(
    count: int,
    capacity: Mapping[str, int],
    occupied: Mapping[str, int],
    *,
    spread: bool,
) -> list[str]:
    """The node for each of ``count`` new replicas. ``capacity``: how many more each node can
    take (in the policy's order of preference); ``occupied``: the model's replicas already there.
    Spread puts each replica on the node holding fewest of the model's replicas (one node's loss
    takes as few as possible); pack fills the first node before the next. LaunchError when the
    nodes cannot take them all."""
    left = dict(capacity)
    held = {node: occupied.get(node, 0) for node in capacity}
    order = list(capacity)
    chosen: list[str] = []
    for _ in range(count):
        open_nodes = [node for node in order if left[node] > 0]
        if not open_nodes:
            raise LaunchError(
                f"{count} replica(s) do not fit: the nodes that can run the model have room for "
                f"{len(chosen)}; add nodes or ask for fewer replicas",
                param="replica",
                code="no_node_fits",
            )
        node = min(open_nodes, key=held.__getitem__) if spread else open_nodes[0]
        chosen.append(node)
        left[node] -= 1
        held[node] += 1
    return chosen
