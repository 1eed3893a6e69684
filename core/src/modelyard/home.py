"""Where modelyard keeps its state: ``MODELYARD_HOME`` (default ``~/.modelyard``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def home_dir() -> Path:
    root = Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
