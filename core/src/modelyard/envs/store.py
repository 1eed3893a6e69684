"""Which Python environment each engine's runners start in: ``<MODELYARD_HOME>/envs/``.

One small JSON file per engine (``<engine>.json``, the name lower-cased) names the interpreter;
managed environments (built by ``modelyard env install``) live beside it in ``<engine>/``. An engine
with no file runs in the server's own environment, the simple default.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path

import msgspec

from ..home import home_dir, write_atomic


class EnvConfig(msgspec.Struct, kw_only=True, omit_defaults=True):
    engine: str  # as the plugin registered it
    python: str  # the interpreter runners of this engine start with
    managed: bool = False  # built by `modelyard env install` (removed with `env remove`)
    variant: str | None = None  # cpu / cuda, for managed environments
    created: float = 0.0


def envs_dir() -> Path:
    return home_dir() / "envs"


def _key(engine: str) -> str:
    # Engine names such as "llama.cpp" become file names: lower case, nothing but [a-z0-9._-].
    return re.sub(r"[^a-z0-9._-]", "_", engine.lower())


class EnvStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or envs_dir()

    def config_path(self, engine: str) -> Path:
        return self.root / f"{_key(engine)}.json"

    def managed_path(self, engine: str) -> Path:
        return self.root / _key(engine)

    def probe_path(self, engine: str) -> Path:
        return self.root / f"{_key(engine)}.probe.json"

    def get(self, engine: str) -> EnvConfig | None:
        path = self.config_path(engine)
        try:
            return msgspec.json.decode(path.read_bytes(), type=EnvConfig)
        except FileNotFoundError:
            return None
        except (OSError, msgspec.DecodeError):
            return None  # a damaged file: treated as unset, and `env use` rewrites it

    def set(self, config: EnvConfig) -> None:
        if not config.created:
            config.created = time.time()
        write_atomic(self.config_path(config.engine), msgspec.json.encode(config))
        self.probe_path(config.engine).unlink(missing_ok=True)

    def remove(self, engine: str) -> EnvConfig | None:
        config = self.get(engine)
        self.config_path(engine).unlink(missing_ok=True)
        self.probe_path(engine).unlink(missing_ok=True)
        if config is not None and config.managed:
            shutil.rmtree(self.managed_path(engine), ignore_errors=True)
        return config

    def all(self) -> list[EnvConfig]:
        if not self.root.is_dir():
            return []
        found = []
        for path in sorted(self.root.glob("*.json")):
            if path.name.endswith(".probe.json"):
                continue
            try:
                found.append(msgspec.json.decode(path.read_bytes(), type=EnvConfig))
            except (OSError, msgspec.DecodeError):
                continue
        return found

    def interpreter(self, engine: str) -> str:
        """The Python a runner of ``engine`` starts with: its environment's, else the server's."""
        config = self.get(engine)
        return config.python if config is not None else sys.executable
