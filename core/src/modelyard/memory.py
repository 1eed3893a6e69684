"""The memory a model would need here, as ``modelyard cal-model-mem`` and the web UI ask for it.

One function picks the spec and the engine the way a launch would (the engine the core would
choose unless one is named), asks that engine's estimate, and says which of the generic options
(context length, parallelism) the engine's estimate did not honour rather than print a wrong answer.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .specs import Estimate, Family, Hardware, ModelSpec


class MemoryAnswer(msgspec.Struct, frozen=True, kw_only=True):
    family: Family
    spec: ModelSpec
    quantization: str
    engine: str | None  # None: no engine can run it; the estimate is the generic one
    estimate: Estimate
    ignored: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model_name": self.family.model_name,
            "model_format": self.spec.model_format,
            "model_size_in_billions": self.spec.model_size_in_billions,
            "quantization": self.quantization,
            "engine": self.engine,
            **msgspec.to_builtins(self.estimate),
            "total": self.estimate.total,
            "ignored": list(self.ignored),
        }


def estimate_memory(
    pm: Any,
    catalog: Any,
    hardware: Hardware,
    *,
    model_name: str,
    model_type: str | None = None,
    model_format: str | None = None,
    size: float | None = None,
    quantization: str | None = None,
    engine: str | None = None,
    context_length: int | None = None,
    parallel: int | None = None,
    params: dict[str, Any] | None = None,
) -> MemoryAnswer:
    """Raises the catalog's errors (unknown model, no such spec) with their own messages."""
    from . import envs, resources
    from .matching import choose_engine

    family = catalog.get(model_name, model_type)
    spec, quant = catalog.select_spec(
        family, model_format=model_format, size=size, quantization=quantization
    )
    if engine is None:
        choice = choose_engine(
            pm, family, spec, quant, hardware, environments=envs.states(pm, envs.EnvStore())
        )
        engine = choice.engine or (choice.ranked[0] if choice.ranked else None)
    # The generic names travel as engine parameters; engine-specific names pass through as given.
    engine_params = dict(params or {})
    if context_length is not None:
        engine_params["context_length"] = context_length
    if parallel is not None:
        engine_params["parallel"] = parallel
    estimate = resources.estimate(pm, engine or "", family, spec, quant, engine_params, hardware)
    ignored = []
    if context_length is not None and estimate.context_length not in (None, context_length):
        ignored.append(f"-c {context_length} (it assumed {estimate.context_length})")
    if parallel is not None and estimate.parallel != parallel:
        ignored.append(f"--parallel {parallel} (it assumed {estimate.parallel})")
    return MemoryAnswer(
        family=family,
        spec=spec,
        quantization=quant,
        engine=engine,
        estimate=estimate,
        ignored=tuple(ignored),
    )
