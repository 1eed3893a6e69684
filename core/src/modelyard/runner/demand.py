"""Models on demand: which idle models to unload to make room, and a request's hold on a model.

Pure decisions (no processes, no clock) so they can be tested on their own; ``ModelManager`` acts
on them. A model is *idle* when it is loaded and ready with no request in flight and none waiting
for it: only idle models are ever unloaded to make room, least recently used first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..resources import human_bytes

# A model counts against --max-loaded-models while it holds (or is about to hold) a runner.
HOLDS_RUNNER: frozenset[str] = frozenset(
    {"creating", "downloading", "installing", "loading", "ready", "unresponsive"}
)


@dataclass(frozen=True)
class Loaded:
    """What eviction needs to know of one model that holds a runner."""

    uid: str
    idle: bool
    last_used: float
    memory: int  # its estimate in bytes (0 when unknown)


@dataclass(frozen=True)
class Room:
    """The outcome: models to unload (in order) with the reason for each, or why room cannot be made."""

    evict: tuple[tuple[str, str], ...] = ()
    refusal: str | None = None


def make_room(
    loaded: Iterable[Loaded],
    *,
    for_uid: str,
    max_loaded: int | None,
    needed: int,
    available: int,
) -> Room:
    """Unload least-recently-used idle models until one more fits under ``max_loaded`` models and
    ``needed`` bytes fit in ``available`` (plus what the unloaded models free)."""
    models = list(loaded)
    excess = len(models) + 1 - max_loaded if max_loaded else 0
    short = needed - available if needed and available else 0
    evict: list[tuple[str, str]] = []
    for model in sorted((m for m in models if m.idle), key=lambda m: m.last_used):
        if excess <= 0 and short <= 0:
            break
        if excess > 0:
            reason = (
                f"evicted (least recently used idle model) to load {for_uid}: "
                f"--max-loaded-models is {max_loaded}"
            )
        else:
            reason = (
                f"evicted (least recently used idle model) to load {for_uid}: it needs about "
                f"{human_bytes(needed)} and {human_bytes(max(available, 0))} is available"
            )
        evict.append((model.uid, reason))
        excess -= 1
        short -= model.memory
    busy = sorted(m.uid for m in models if not m.idle)
    if excess > 0:
        return Room(
            refusal=f"{len(models)} models are loaded (--max-loaded-models {max_loaded}) and "
            f"none can be unloaded: requests are in flight on {', '.join(busy)}; retry shortly"
        )
    if short > 0:
        return Room(
            refusal=f"not enough memory for {for_uid}: it needs about {human_bytes(needed)}, "
            f"{human_bytes(max(available, 0))} is available and the models that could be "
            f"unloaded do not free enough (busy: {', '.join(busy) or 'none'}); retry shortly"
        )
    return Room(evict=tuple(evict))


def reclaimable(loaded: Sequence[Loaded]) -> int:
    """Bytes that unloading every idle model would free (the admission check counts them)."""
    return sum(m.memory for m in loaded if m.idle)


class Held:
    """A request's chunk stream that counts as in flight on its model from creation until it ends
    or is closed (a plain async generator would not run its ``finally`` if never started)."""

    def __init__(self, source: AsyncIterator[Any], release: Callable[[], None]) -> None:
        self._source = source
        self._release: Callable[[], None] | None = release

    def __aiter__(self) -> Held:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._source)
        except BaseException:
            self._done()
            raise

    async def aclose(self) -> None:
        try:
            close = getattr(self._source, "aclose", None)
            if close is not None:
                await close()
        finally:
            self._done()

    def _done(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
