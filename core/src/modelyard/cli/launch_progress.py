"""`modelyard launch`'s progress bars (download, then load) and its "chosen engine, and why"."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..errors import LaunchError
from . import output

if TYPE_CHECKING:
    from ..client import Client

POLL_INTERVAL = 0.25
_STAGES = {
    "creating": "Planning",
    "downloading": "Downloading",
    "installing": "Installing",
    "loading": "Loading",
}


def follow_launch(client: Client, uid: str) -> None:
    """Show a bar per stage until the model is ready; a failed launch raises its error (state
    "error" while its runner stops, then a 404 with the cause from the progress route)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    with Progress(*columns, TimeElapsedColumn(), console=output.console(stderr=True)) as bars:
        tasks: dict[str, Any] = {}
        while True:
            state = client.get_launch_model_progress(uid)
            stage = str(state.get("state"))
            for name, task in tasks.items():
                if name != stage:
                    bars.update(task, completed=1.0)
            if stage == "error":  # failed; the record goes away once its runner is stopped
                raise LaunchError(str(state.get("error") or f"the launch of {uid} failed"))
            if stage not in _STAGES:
                return
            if stage not in tasks:
                tasks[stage] = bars.add_task(f"{_STAGES[stage]} {uid}", total=1.0)
            bars.update(tasks[stage], completed=float(state.get("progress") or 0.0))
            time.sleep(POLL_INTERVAL)


def explain_engine(description: dict[str, Any]) -> None:
    """Print the engine the server chose and why (the matcher's own explanation)."""
    engine = description.get("model_engine")
    output.note(f"Engine: {engine}")
    reason = description.get("engine_reason")
    if reason:
        for line in str(reason).splitlines():
            output.note(f"  {line}")
