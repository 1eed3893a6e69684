"""What another Python environment offers, asked of its own interpreter and cached.

The server never imports an engine library to match or estimate, and another environment's
libraries cannot be imported here at all: a short subprocess of that interpreter reports its
modelyard version, runner protocol and the engines its plugins register (library, version,
available or why not). The answer is cached beside the environment's config and asked again when
a ``site-packages`` folder of that environment changes (an install or an upgrade touches it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import msgspec

from ..errors import InvalidRequest
from ..specs import EngineInfo
from .store import EnvStore

PROBE_TIMEOUT = 120.0  # a cold interpreter importing the plugins on a busy 2-core machine

# Runs in the probed interpreter. Prints one JSON object; never raises.
_PROBE = """
import json, platform, sys
out = {"python": sys.executable, "python_version": platform.python_version(),
       "site": sorted({p for p in sys.path if p.endswith("site-packages")})}
try:
    import msgspec, modelyard
    from modelyard.plugins import get_plugin_manager
    from modelyard.runner import protocol
except Exception as exc:
    out["missing"] = f"{type(exc).__name__}: {exc}"
else:
    pm = get_plugin_manager()
    out["modelyard_version"] = modelyard.__version__
    out["protocol"] = getattr(protocol, "PROTOCOL_VERSION", 0)
    out["engines"] = msgspec.to_builtins(list(pm.engines().values()))
    out["failed_plugins"] = dict(pm.failed)
    facts = {name: pm.call_owner("engine_facts", name) for name in pm.engines()}
    out["facts"] = msgspec.to_builtins({k: v for k, v in facts.items() if v is not None})
print(json.dumps(out))
"""


class EnvFacts(msgspec.Struct, kw_only=True):
    python: str
    python_version: str
    site: list[str] = []
    modelyard_version: str | None = None
    protocol: int | None = None
    engines: list[EngineInfo] = []
    failed_plugins: dict[str, str] = {}
    facts: dict[str, dict[str, Any]] = {}  # engine_facts of each engine, as that environment says
    missing: str | None = None  # why modelyard could not be imported there

    def engine(self, name: str) -> EngineInfo | None:
        return next((e for e in self.engines if e.name.lower() == name.lower()), None)


class _Cached(msgspec.Struct):
    python: str  # the interpreter asked
    stamp: dict[str, int]  # its site-packages folders' modification times then
    facts: EnvFacts


def probe(python: str, timeout: float = PROBE_TIMEOUT) -> EnvFacts:
    """Ask ``python`` what it has. ``InvalidRequest`` naming the path when it is no interpreter."""
    path = Path(python)
    if not path.is_file() or not os.access(path, os.X_OK):
        raise InvalidRequest(
            f"{python} is not an executable file: give the path of a Python interpreter"
        )
    try:
        done = subprocess.run(
            [python, "-I", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InvalidRequest(f"{python} could not be run as a Python interpreter: {exc}") from exc
    try:
        return msgspec.json.decode(done.stdout.strip().splitlines()[-1], type=EnvFacts)
    except (IndexError, msgspec.DecodeError) as exc:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise InvalidRequest(
            f"{python} is not a Python interpreter modelyard can use: {' | '.join(tail) or exc}"
        ) from exc


def _stamp(sites: list[str]) -> dict[str, int]:
    stamp = {}
    for site in sites:
        try:
            stamp[site] = os.stat(site).st_mtime_ns
        except OSError:
            stamp[site] = -1
    return stamp


def cached_probe(store: EnvStore, engine: str, python: str) -> EnvFacts:
    """``probe(python)``, reused while none of the environment's site-packages folders changed."""
    cache = store.probe_path(engine)
    try:
        cached = msgspec.json.decode(cache.read_bytes(), type=_Cached)
        if cached.python == python and cached.stamp == _stamp(list(cached.stamp)):
            return cached.facts
    except (OSError, msgspec.DecodeError):
        pass
    facts = probe(python)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(msgspec.json.encode(_Cached(python, _stamp(facts.site), facts)))
    return facts
