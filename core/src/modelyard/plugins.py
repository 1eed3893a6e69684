"""Finding and loading engine plugins, and the registry of the engines they declare.

Plugins are modules registered in the ``modelyard.engines`` entry-point group. Environment:

- ``MODELYARD_PLUGINS``: comma-separated allow-list of entry-point names; only these load.
- ``MODELYARD_BLOCK_PLUGINS``: comma-separated entry-point names never to load.
- ``MODELYARD_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry points at all (tests register by hand).
- ``MODELYARD_PLUGIN_MODULES``: comma-separated importable module names to register as plugins
  besides the entry points (a plugin under development, or a test engine, without packaging it).

A plugin that fails to import is recorded with its error and reported by ``modelyard plugins``;
it never takes the process down.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import traceback
from collections.abc import Callable, Iterable
from functools import cache, partial
from types import ModuleType
from typing import Any

import msgspec
import pluggy

from . import hookspecs
from .errors import ModelyardError
from .specs import EngineInfo

ENTRY_POINT_GROUP = "modelyard.engines"


class PluginConflict(ModelyardError):
    status = 500


class PluginInfo(msgspec.Struct, omit_defaults=True):
    name: str
    distribution: str | None = None
    version: str | None = None
    hooks: list[str] = []
    engines: list[str] = []
    error: str | None = None


def _env_list(name: str) -> set[str]:
    return {item.strip() for item in os.environ.get(name, "").split(",") if item.strip()}


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


class PluginManager:
    """The pluggy manager plus what modelyard needs around it: load errors and the engine registry."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("modelyard")
        self.pm.add_hookspecs(hookspecs)
        self.failed: dict[str, str] = {}
        # pluggy learns distributions only through its own setuptools loader; we load entry points
        # ourselves (to catch import errors), so keep each plugin's distribution here.
        self._dists: dict[str, importlib.metadata.Distribution] = {}
        self._engines: dict[str, EngineInfo] | None = None
        self._owners: dict[str, str] = {}  # engine name, lower-cased -> the plugin that declared it

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def load_entry_points(self) -> None:
        for module_name in sorted(_env_list("MODELYARD_PLUGIN_MODULES")):
            self._load(module_name, partial(importlib.import_module, module_name))
        if os.environ.get("MODELYARD_DISABLE_PLUGIN_AUTOLOAD", "").lower() in ("1", "true", "yes"):
            return
        allow, block = _env_list("MODELYARD_PLUGINS"), _env_list("MODELYARD_BLOCK_PLUGINS")
        for ep in _entry_points():
            if (allow and ep.name not in allow) or ep.name in block or self.pm.has_plugin(ep.name):
                continue
            self._load(ep.name, ep.load, ep.dist)

    def _load(
        self,
        name: str,
        load: Callable[[], object],
        dist: importlib.metadata.Distribution | None = None,
    ) -> None:
        try:
            module = load()
        except Exception as exc:  # a broken plugin is reported, not fatal
            self.failed[name] = format_exception(exc)
            return
        self.register(module, name=name)
        if dist is not None:
            self._dists[name] = dist

    def register(self, plugin: ModuleType | object, name: str | None = None) -> None:
        self.pm.register(plugin, name=name)
        # A hook implementation whose name matches no hookspec is a typo: fail loudly, now.
        self.pm.check_pending()
        self._engines = None

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._engines = None

    def distribution_of(self, engine: str) -> importlib.metadata.Distribution | None:
        """The installed distribution of the plugin that registered ``engine``."""
        info = self.engine(engine)
        return None if info is None else self._dists.get(self._owners[info.name.lower()])

    def call_owner(self, hook: str, engine: str, **kwargs: Any) -> Any:
        """Call ``hook`` on the plugin that registered ``engine`` only, with the engine's name as it
        was registered (``engine`` is matched case-insensitively). None when no plugin has it.

        Routing instead of asking every plugin "is this yours?": a plugin never sees another's
        engine, and a name in another case still reaches its owner."""
        info = self.engine(engine)
        if info is None:
            return None
        owner = self._owners[info.name.lower()]
        others = [plugin for name, plugin in self.pm.list_name_plugin() if name != owner]
        caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
        return caller(engine=info.name, **kwargs)

    def engines(self) -> dict[str, EngineInfo]:
        """Every engine the loaded plugins declare, by name (as registered)."""
        if self._engines is None:
            self._engines = self._collect_engines()
        return self._engines

    def _declared(self) -> list[tuple[str, EngineInfo]]:
        """(plugin name, engine) for every engine each plugin's ``register_engines`` declares."""
        declared: list[tuple[str, EngineInfo]] = []
        for impl in self.pm.hook.register_engines.get_hookimpls():
            impl.function(
                register=lambda info, owner=impl.plugin_name: declared.append((owner, info))
            )
        return declared

    def _collect_engines(self) -> dict[str, EngineInfo]:
        engines: dict[str, EngineInfo] = {}
        owners: dict[str, str] = {}
        for owner, info in self._declared():
            key = info.name.lower()
            if key in owners:
                raise PluginConflict(
                    f"engine {info.name!r} is registered by both plugin {owners[key]!r} "
                    f"and plugin {owner!r}; block one with MODELYARD_BLOCK_PLUGINS"
                )
            owners[key] = owner
            engines[info.name] = info
        self._owners = owners
        return engines

    def engine(self, name: str) -> EngineInfo | None:
        """Look an engine up case-insensitively ("llama.cpp", "vllm", "Transformers"...)."""
        for info in self.engines().values():
            if info.name.lower() == name.lower():
                return info
        return None

    def describe(self) -> list[PluginInfo]:
        """What is installed: each plugin with its distribution, version, hooks and engines."""
        # Listed per plugin even when two plugins clash, so that `modelyard plugins` shows the clash.
        owners: dict[str, list[str]] = {}
        for owner, info in self._declared():
            owners.setdefault(owner, []).append(info.name)
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            dist = self._dists.get(name)
            callers = self.pm.get_hookcallers(plugin) or []
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=dist.metadata["Name"] if dist else None,
                    version=dist.version if dist else None,
                    hooks=sorted(caller.name for caller in callers),
                    engines=owners.get(name, []),
                )
            )
        infos.extend(
            PluginInfo(name=name, error=error) for name, error in sorted(self.failed.items())
        )
        return infos


@cache
def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, with entry points loaded on first use."""
    manager = PluginManager()
    manager.load_entry_points()
    return manager


def format_exception(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
