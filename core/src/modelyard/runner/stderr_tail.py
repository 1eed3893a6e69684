"""Keep the last lines written to stderr, by this process and the processes it starts meanwhile.

For engines whose workers run in subprocesses (vLLM's engine core, SGLang's scheduler): when one
fails to start, the parent only raises "Engine core initialization failed. See root cause above."
or "scheduler is dead"; the root cause went to stderr. While the engine starts,
fd 2 is pointed at a pipe that a thread copies through to the real stderr, remembering the tail. The
subprocess keeps the pipe as its stderr for its whole life, so the copying thread outlives the block
(a daemon thread that ends when the last writer closes the pipe).
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sys
import threading
import time
from types import TracebackType

_ERROR_LINE = re.compile(r"\b\w*(Error|Exception)\b:?\s")
_LOG_PREFIX = re.compile(
    r"^(\(\w+ pid=\d+\)\s*)?((ERROR|WARNING|INFO|DEBUG)\s+\S+\s+\S+\s+\[[^\]]*\]\s*)?"
)


class StderrTail:
    def __init__(self, lines: int = 200) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._saved: int | None = None
        self._last_read = time.monotonic()

    def __enter__(self) -> StderrTail:
        sys.stderr.flush()
        read_end, write_end = os.pipe()
        self._saved = os.dup(2)
        os.dup2(write_end, 2)
        os.close(write_end)
        threading.Thread(
            target=self._pump, args=(read_end, os.dup(self._saved)), daemon=True
        ).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.stderr.flush()
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
            self._saved = None

    def _pump(self, read_end: int, out: int) -> None:
        pending = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                with contextlib.suppress(
                    OSError
                ):  # the real stderr is gone: still remember the text
                    os.write(out, chunk)
                self._last_read = time.monotonic()
                pending += chunk
                *done, pending = pending.split(b"\n")
                self.lines.extend(line.decode("utf-8", "replace").rstrip() for line in done)
        os.close(out)

    def reason(self) -> str:
        """The most telling line seen: the last one naming an error, without its log prefix."""
        deadline = time.monotonic() + 2.0
        # The failing process wrote before the parent noticed; let the pump catch up with the pipe.
        while time.monotonic() - self._last_read < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for line in reversed(self.lines):
            if _ERROR_LINE.search(line) and "see root cause above" not in line.lower():
                return _LOG_PREFIX.sub("", line).strip()
        for line in reversed(self.lines):
            if line.strip():
                return _LOG_PREFIX.sub("", line).strip()
        return ""
