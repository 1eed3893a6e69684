"""Choosing an engine: every installed engine answers, the core ranks the yes-answers.

The order, best first (engine names compare case-insensitively):

- Linux, with or without a CUDA device, and any other system: vLLM, SGLang, llama.cpp,
  Transformers, sentence_transformers, MLX. The engines decide for themselves whether they can run a spec (vLLM says no
  to GGUF and to hosts without a device it supports), so on Linux a GGUF lands on llama.cpp and a
  pytorch model on vLLM when it is installed, else on Transformers.
- Apple Silicon (darwin/arm64): MLX, llama.cpp, Transformers, sentence_transformers, then vLLM
  and SGLang.
- ``sentence_transformers`` (the transformers plugin's embedding and rerank engine) ranks right
  after Transformers.
- Engines unknown to the order (third-party plugins) come after the known ones, alphabetically.
- A user ``preference`` list (the launch's, or ``MODELYARD_ENGINE_PREFERENCE``, comma-separated)
  comes before all of that, in its own order.

An explicitly requested engine is used when it said yes; otherwise no engine is chosen
(``Choice.engine is None``) and its refusal says why, even when other engines could run the
model: a launch asked for that engine, and silently swapping it would surprise the user.

Everything here but ``choose_engine`` / ``engine_table`` (which ask the plugins) and
``env_preference`` is pure: the hardware is an argument, nothing is probed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from msgspec import Struct

from .specs import (
    Family,
    Hardware,
    Match,
    ModelSpec,
    format_size,
)

if TYPE_CHECKING:
    from .envs import EngineState
    from .plugins import PluginManager

ENGINE_ORDER: dict[str, tuple[str, ...]] = {
    "linux": ("vLLM", "SGLang", "llama.cpp", "Transformers", "sentence_transformers", "MLX"),
    "apple_silicon": (
        "MLX",
        "llama.cpp",
        "Transformers",
        "sentence_transformers",
        "vLLM",
        "SGLang",
    ),
    "other": ("vLLM", "SGLang", "llama.cpp", "Transformers", "sentence_transformers", "MLX"),
}

PREFERENCE_ENV = "MODELYARD_ENGINE_PREFERENCE"


class Choice(Struct):
    """The outcome of matching: the engine to use (or None), every yes best first, every no with why."""

    engine: str | None
    ranked: list[str]
    refusals: dict[str, str]
    requested: str | None = None

    def explain(self) -> str:
        lines: list[str] = []
        if self.engine is not None:
            lines.append(f"Chosen engine: {self.engine}")
        elif self.requested is not None:
            reason = self._refusal(self.requested) or "it did not answer"
            lines.append(f"Requested engine {self.requested!r} cannot run this model: {reason}")
        else:
            lines.append("No installed engine can run this model.")
        if self.ranked:
            lines.append(f"Can run it (best first): {', '.join(self.ranked)}")
        if self.refusals:
            lines.append("Cannot run it:")
            lines.extend(f"  {name}: {reason}" for name, reason in self.refusals.items())
        return "\n".join(lines)

    def _refusal(self, engine: str) -> str | None:
        for name, reason in self.refusals.items():
            if name.lower() == engine.lower():
                return reason
        return None


def order_for(hardware: Hardware) -> tuple[str, ...]:
    if hardware.is_apple_silicon:
        return ENGINE_ORDER["apple_silicon"]
    if hardware.system == "linux":
        return ENGINE_ORDER["linux"]
    return ENGINE_ORDER["other"]


def env_preference(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The user's engine preference from ``MODELYARD_ENGINE_PREFERENCE`` ("vLLM,llama.cpp")."""
    raw = (os.environ if environ is None else environ).get(PREFERENCE_ENV, "")
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _merge(matches: Iterable[Match]) -> tuple[dict[str, str], set[str]]:
    """Engine → reason for every no, and the set of yes; an engine that answered twice is a yes only
    if every answer was yes (order-independent, so registration order cannot change the outcome)."""
    reasons: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for match in matches:
        # Keep one spelling per engine, the same whatever order the answers came in.
        key = match.engine.lower()
        names[key] = min(names.get(key, match.engine), match.engine)
        bucket = reasons.setdefault(key, set())
        if not match.ok:
            bucket.add(match.reason or "refused without a reason")
    refusals = {names[k]: "; ".join(sorted(r)) for k, r in reasons.items() if r}
    yes = {names[k] for k, r in reasons.items() if not r}
    return refusals, yes


def rank(
    matches: Sequence[Match],
    hardware: Hardware,
    *,
    requested: str | None = None,
    preference: Sequence[str] = (),
) -> Choice:
    """Rank the yes-answers by preference, then the documented order, then name; keep every no."""
    refusals, yes = _merge(matches)
    order = [name.lower() for name in order_for(hardware)]
    prefs = [name.lower() for name in preference]

    def key(name: str) -> tuple[int, int, str, str]:
        low = name.lower()
        pref = prefs.index(low) if low in prefs else len(prefs)
        known = order.index(low) if low in order else len(order)
        return (pref, known, low, name)

    ranked = sorted(yes, key=key)
    refusals = {name: refusals[name] for name in sorted(refusals, key=key)}
    if requested is None:
        return Choice(engine=ranked[0] if ranked else None, ranked=ranked, refusals=refusals)
    for name in ranked:
        if name.lower() == requested.lower():
            return Choice(engine=name, ranked=ranked, refusals=refusals, requested=name)
    refused = [name for name in refusals if name.lower() == requested.lower()]
    if refused:
        return Choice(engine=None, ranked=ranked, refusals=refusals, requested=refused[0])
    installed = ", ".join(sorted([*yes, *refusals], key=key)) or "none"
    refusals[requested] = f"not installed; installed engines: {installed}"
    return Choice(engine=None, ranked=ranked, refusals=refusals, requested=requested)


def collect_matches(
    pm: PluginManager,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    environments: Mapping[str, EngineState] | None = None,
) -> list[Match]:
    """Every engine's answer. Engines that did not answer, or that answered for a model type they
    did not declare, or whose library is missing, are refusals with the reason.

    ``environments`` (``envs.states``): engines that run in an environment of their own are judged
    by what that environment has (its library, the facts its plugin reported there)."""
    environments = environments or {}
    engines = pm.engines()
    facts = {state.engine: state.facts for state in environments.values() if state.info}
    answers: list[Match] = []
    for result in pm.hook.match_engine(
        family=family, spec=spec, quantization=quantization, hardware=hardware, facts=facts
    ):
        answers.extend(result or ())
    answered = {m.engine.lower() for m in answers}
    for name, info in engines.items():
        state = environments.get(name.lower())
        if state is not None:
            info = state.info or msgspec.structs.replace(
                info, available=False, unavailable_reason=state.reason
            )
        if not info.available:
            # The library is missing: whatever the plugin said, it cannot run here.
            answers = [m for m in answers if m.engine.lower() != name.lower()]
            answers.append(
                Match.no(name, info.unavailable_reason or f"{info.library} is not installed")
            )
        elif family.model_type not in info.model_types:
            answers = [m for m in answers if m.engine.lower() != name.lower()]
            answers.append(
                Match.no(
                    name, f"serves {'/'.join(info.model_types)} models, not {family.model_type}"
                )
            )
        elif name.lower() not in answered:
            answers.append(
                Match.no(name, "its plugin gave no answer for this engine (a plugin bug)")
            )
    return answers


def choose_engine(
    pm: PluginManager,
    family: Family,
    spec: ModelSpec,
    quantization: str,
    hardware: Hardware,
    *,
    requested: str | None = None,
    preference: Sequence[str] | None = None,
    environments: Mapping[str, EngineState] | None = None,
) -> Choice:
    """Ask every engine about this spec and rank the answers. ``preference=None`` reads
    ``MODELYARD_ENGINE_PREFERENCE``; pass ``()`` for none."""
    prefs = env_preference() if preference is None else preference
    matches = collect_matches(pm, family, spec, quantization, hardware, environments)
    return rank(matches, hardware, requested=requested, preference=prefs)


def engine_table(
    pm: PluginManager,
    family: Family,
    hardware: Hardware,
    environments: Mapping[str, EngineState] | None = None,
) -> dict[str, list[dict[str, Any]] | str]:
    """Xinference's ``/v1/engines/{model_name}`` shape: for each engine serving this model type, the
    specs and quantizations it can run here, or one string with its reasons when it can run none."""
    engines = {
        name: info for name, info in pm.engines().items() if family.model_type in info.model_types
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    reasons: dict[str, list[str]] = {name: [] for name in engines}
    for spec in family.model_specs:
        ok_quants: dict[str, list[str]] = {}
        for quant in spec.quantizations:
            for match in collect_matches(pm, family, spec, quant, hardware, environments):
                name = _canonical(match.engine, engines)
                if name is None:
                    continue
                if match.ok:
                    ok_quants.setdefault(name, []).append(quant)
                elif match.reason and match.reason not in reasons[name]:
                    reasons[name].append(match.reason)
        for name, quants in ok_quants.items():
            runs[name].extend(_entries(family, spec, quants))
    order = order_for(hardware)
    table: dict[str, list[dict[str, Any]] | str] = {}
    for name in sorted(engines, key=lambda n: (_position(n, order), n.lower())):
        table[name] = (
            runs[name] if runs[name] else "; ".join(reasons[name]) or "cannot run this model"
        )
    return table


def _entries(family: Family, spec: ModelSpec, quants: list[str]) -> list[dict[str, Any]]:
    if family.model_type == "LLM":
        return [
            {
                "model_name": family.model_name,
                "model_format": spec.model_format,
                "model_size_in_billions": format_size(spec.model_size_in_billions),
                "quantizations": quants,
            }
        ]
    return [
        {"model_name": family.model_name, "model_format": spec.model_format, "quantization": quant}
        for quant in quants
    ]


def _canonical(name: str, engines: Mapping[str, object]) -> str | None:
    for known in engines:
        if known.lower() == name.lower():
            return known
    return None


def _position(name: str, order: Sequence[str]) -> int:
    lowered = [n.lower() for n in order]
    return lowered.index(name.lower()) if name.lower() in lowered else len(lowered)
