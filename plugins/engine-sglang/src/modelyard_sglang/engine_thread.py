"""A thread that starts SGLang's engine and lives as long as the engine does.

SGLang's scheduler and detokenizer processes ask the kernel to SIGKILL them when their parent dies
(``PR_SET_PDEATHSIG``), and on Linux that follows the *thread* that started them, not the process.
The runner loads models in its worker threads, which end once they have been idle for a while: an
engine started there lost its scheduler seconds after its first quiet spell. The engine is started
here instead, and this thread waits until the model is closed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class EngineThread:
    def __init__(self, start: Callable[[], Any]) -> None:
        self._released = threading.Event()
        self._outcome: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=1)
        self._thread = threading.Thread(
            target=self._run, args=(start,), name="sglang-engine", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[], Any]) -> None:
        try:
            self._outcome.put((start(), None))
        except BaseException as exc:  # handed to the caller of result()
            self._outcome.put((None, exc))
            return
        self._released.wait()

    def result(self) -> Any:
        """What ``start`` returned, once it has; what it raised, raised here."""
        value, error = self._outcome.get()
        if error is not None:
            raise error
        return value

    def release(self) -> None:
        """Let the thread end: the engine's processes have been shut down (or must go with it)."""
        self._released.set()
