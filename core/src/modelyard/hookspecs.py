"""The plugin contract. An engine plugin implements these hooks; see tests/example_engine for a template."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pluggy

from .engine import LoadedModel
from .specs import EngineInfo, Estimate, Family, Hardware, Match, ModelSpec

hookspec = pluggy.HookspecMarker("modelyard")
hookimpl = pluggy.HookimplMarker("modelyard")


@hookspec
def register_engines(register: Callable[[EngineInfo], None]) -> None:
    """Declare the engines this plugin provides by calling ``register(EngineInfo(...))`` once each.

    Must be cheap: do not import the engine library or torch. When the library is missing, register
    the engine with ``available=False`` and an ``unavailable_reason`` that says how to install it.
    A name registered twice (by any plugins) is an error that names both plugins. ``preload`` names
    the modules a warm runner of the engine imports before a launch arrives (the engine library and
    the plugin module that loads models): a relaunch then skips those imports.
    """


@hookspec
def register_families(register: Callable[[Family], None]) -> None:
    """Optionally contribute model families to the catalog by calling ``register(family)``."""


@hookspec
def match_engine(
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    facts: Mapping[str, Mapping[str, Any]],
) -> list[Match] | None:
    """Say, for each engine this plugin registered, whether it can run ``spec`` at ``quantization``
    on ``hardware``. Collect-all: every plugin answers. Return one ``Match`` per engine: yes, or no
    with a reason a user can act on (missing library, wrong format, no CUDA device, unsupported
    architecture...). Must be pure: no I/O, decide from the arguments and the plugin's own state.

    ``facts``: for engines that run in an environment of their own, what ``engine_facts`` returned
    there, by engine name. An engine listed there is judged by those facts, not by what this
    (the server's) environment has installed. Declaring the parameter is optional.
    """


@hookspec(firstresult=True)
def engine_facts(engine: str) -> dict[str, Any] | None:
    """Optional. Runs in the engine's own environment (modelyard asks it through a probe, cached):
    the facts ``match_engine`` needs about the engine's library there (e.g. vLLM's build and the
    architectures it supports), as plain JSON values. Called only on the plugin that registered
    ``engine``; must be fast and must not import heavy libraries."""


@hookspec(firstresult=True)
def estimate_resources(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    hardware: Hardware,
) -> Estimate | None:
    """Estimate the memory to serve ``spec`` on ``engine`` with launch ``params`` (context length,
    parallel slots, dtype...), and its placement (e.g. llama.cpp GPU layers). Called only on the
    plugin that registered ``engine``, with the name as registered; None: use the core's generic
    estimate. ``modelyard.resources`` has the shared arithmetic.

    Besides the engine's own names, ``params`` may carry modelyard's generic ``context_length``
    (tokens one request may use) and ``parallel`` (requests served at once), as `cal-model-mem -c
    / --parallel` sends them; map them to the engine's names, letting those win when both are set,
    and report them in ``Estimate.context_length`` / ``Estimate.parallel``. Engines for which they
    mean something (llama.cpp, Transformers, vLLM) accept them in ``load_model`` too.
    """


@hookspec(firstresult=True)
def load_model(
    engine: str,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    params: dict[str, Any],
    path: Path,
) -> LoadedModel | None:
    """Load the weights at ``path`` (a file for GGUF, else a directory) in this runner process and
    return the handle that serves requests. Called only on the plugin that registered ``engine``,
    with the name as registered. Reject unknown ``params`` with an ``InvalidRequest`` naming close
    matches (``modelyard.errors.did_you_mean``).
    """


@hookspec(firstresult=True)
def engine_environment(engine: str, variant: str) -> Path | None:
    """Optional. The pinned requirements file (``uv pip compile`` output) from which
    ``modelyard env install ENGINE --variant VARIANT`` builds ``engine``'s own environment; the core
    adds modelyard and this plugin. Called only on the plugin that registered ``engine``. None: this
    plugin has no pinned environment for ``variant``. Lines installing modelyard or the plugin
    themselves (``-e ...``) are skipped.
    """


@hookspec
def prepare_environment(engine: str, variant: str) -> None:
    """Optional. Runs inside ``engine``'s newly built environment (a process of its interpreter),
    after ``modelyard env install`` has installed the pins, modelyard and this plugin, and before
    the environment is probed: the fix-ups a requirements file cannot express (a patched file, an
    import shim). Called only on the plugin that registered ``engine``; must be idempotent. Raise to
    fail the install (the previous environment stays in place).
    """
