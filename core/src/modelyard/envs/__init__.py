"""Engine environments: each engine's runners start with the interpreter of the environment that
holds its library, so engines whose dependencies conflict serve side by side from one server.

``EnvStore`` remembers the interpreter per engine; ``probe`` asks an interpreter what it has;
``describe`` gives, per engine the server knows, where it runs and whether it can.
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

from ..errors import InvalidRequest
from ..plugins import PluginManager
from ..runner.protocol import PROTOCOL_VERSION
from ..specs import EngineInfo
from .probing import EnvFacts, cached_probe, probe
from .store import EnvConfig, EnvStore

__all__ = [
    "EngineState",
    "EnvConfig",
    "EnvFacts",
    "EnvStore",
    "Environment",
    "check_engine",
    "describe",
    "owned_engine",
    "probe",
    "ready",
    "states",
    "use",
]


class Environment(msgspec.Struct, kw_only=True):
    """One engine's environment, as `modelyard env list` and ``GET /v1/environments`` show it."""

    engine: str
    python: str
    own: bool  # an environment of its own (else the server's)
    managed: bool = False
    library: str | None = None
    library_version: str | None = None
    available: bool = False
    reason: str | None = None


class EngineState(msgspec.Struct, frozen=True):
    """An engine as its own environment has it: the engine there (None: unusable, see ``reason``)
    and the facts its plugin reported there, for ``match_engine``."""

    engine: str
    config: EnvConfig
    info: EngineInfo | None
    reason: str | None = None
    facts: dict[str, Any] = {}


def states(pm: PluginManager, store: EnvStore) -> dict[str, EngineState]:
    """Every engine that has an environment of its own, by lower-cased name (cached probes)."""
    found: dict[str, EngineState] = {}
    for config in store.all():
        info = pm.engine(config.engine)
        if info is None:
            continue  # an environment for an engine whose plugin is gone from the server
        try:
            facts = cached_probe(store, info.name, config.python)
            there = check_engine(info.name, config.python, facts)
        except InvalidRequest as exc:
            found[info.name.lower()] = EngineState(info.name, config, None, exc.message)
            continue
        found[info.name.lower()] = EngineState(
            info.name, config, there, facts=facts.facts.get(info.name, {})
        )
    return found


def describe(pm: PluginManager, store: EnvStore) -> list[Environment]:
    """Every engine the server knows: where its runners start, and whether the engine works there."""
    own = states(pm, store)
    found = []
    for info in pm.engines().values():
        state = own.get(info.name.lower())
        there = info if state is None else state.info
        config = None if state is None else state.config
        found.append(
            Environment(
                engine=info.name,
                python=sys.executable if config is None else config.python,
                own=config is not None,
                managed=config is not None and config.managed,
                library=(there or info).library,
                library_version=there.library_version if there else None,
                available=there is not None and there.available,
                reason=state.reason if state is not None else info.unavailable_reason,
            )
        )
    return found


def use(pm: PluginManager, store: EnvStore, engine: str, python: str) -> Environment:
    """Point ``engine`` at ``python`` after checking that its runners can start there."""
    info = owned_engine(pm, engine)
    there = check_engine(info.name, python, probe(python))
    store.set(EnvConfig(engine=info.name, python=python))
    return ready(there, python, managed=False)


def owned_engine(pm: PluginManager, engine: str) -> EngineInfo:
    """The engine as the server's plugins register it; a 400 listing the engines when none does."""
    info = pm.engine(engine)
    if info is None:
        known = ", ".join(sorted(pm.engines())) or "none"
        raise InvalidRequest(
            f"no installed plugin registers an engine {engine!r} (engines here: {known})",
            param="engine",
        )
    return info


def ready(there: EngineInfo, python: str, *, managed: bool) -> Environment:
    return Environment(
        engine=there.name,
        python=python,
        own=True,
        managed=managed,
        library=there.library,
        library_version=there.library_version,
        available=True,
    )


def check_engine(engine: str, python: str, facts: EnvFacts) -> EngineInfo:
    """The engine as ``python``'s environment registers it, or InvalidRequest saying what is missing."""
    if facts.missing is not None:
        raise InvalidRequest(
            f"{python} has no usable modelyard ({facts.missing}): install modelyard and the "
            f"{engine} engine plugin into that environment"
        )
    if facts.protocol != PROTOCOL_VERSION:
        raise InvalidRequest(
            f"{python} runs modelyard {facts.modelyard_version} with runner protocol "
            f"{facts.protocol}; this server speaks protocol {PROTOCOL_VERSION}: install the same "
            f"modelyard there (`{python} -m pip install modelyard=={_version()}`)"
        )
    found = facts.engine(engine)
    if found is None:
        raise InvalidRequest(
            f"{python} has modelyard but no plugin registering the {engine} engine: install the "
            "engine's plugin into that environment"
        )
    if not found.available:
        raise InvalidRequest(
            f"the {engine} engine cannot run in {python}: {found.unavailable_reason}"
        )
    return found


def _version() -> str:
    from .. import __version__

    return __version__
