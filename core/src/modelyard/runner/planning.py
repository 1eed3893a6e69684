"""From a LaunchRequest to a LaunchPlan: family, spec, engine, and a memory check, before any process.

Everything here is quick and decided in the server, so a launch that cannot work fails at once with
the reason (unknown model, no spec fits, every engine's refusal, the memory numbers) and never starts
a runner. Downloading the weights comes after, in ``ModelManager``.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from ..errors import LaunchError
from ..plugins import PluginManager
from ..specs import Estimate, Family, Hardware, LaunchRequest, ModelSpec, ModelType


class CatalogLike(Protocol):
    """The part of ``modelyard.catalog.Catalog`` a launch needs."""

    def get(self, name: str, model_type: ModelType | None = None) -> Family: ...

    def select_spec(
        self,
        family: Family,
        *,
        model_format: str | None = None,
        size: float | None = None,
        quantization: str | None = None,
    ) -> tuple[ModelSpec, str]: ...


class LaunchPlan(msgspec.Struct, kw_only=True):
    """A launch decided: what to load, on which engine. ``path`` is set once weights are local."""

    model_name: str
    model_type: ModelType
    family: Family
    spec: ModelSpec
    quantization: str
    engine: str
    params: dict[str, Any] = {}
    estimate: Estimate | None = None
    path: str | None = None


def plan_launch(
    request: LaunchRequest, *, pm: PluginManager, catalog: CatalogLike, hardware: Hardware
) -> LaunchPlan:
    from .. import matching, resources  # colleagues' modules; imported when a launch happens

    if request.replica != 1:
        raise LaunchError(
            f"replica={request.replica} is not supported yet; launch the model {request.replica} "
            "times with different model_uid values instead",
            param="replica",
        )
    family = catalog.get(request.model_name, request.model_type)
    spec, quantization = catalog.select_spec(
        family,
        model_format=request.model_format,
        size=request.model_size_in_billions,
        quantization=request.quantization,
    )
    choice = matching.choose_engine(
        pm, family, spec, quantization, hardware, requested=request.model_engine
    )
    if choice.engine is None:
        raise LaunchError(
            f"cannot launch {family.model_name} ({spec.model_format}, "
            f"{spec.model_size_in_billions:g}B, {quantization}):\n{choice.explain()}",
            param="model_engine" if request.model_engine else None,
        )
    estimate = resources.estimate(
        pm, choice.engine, family, spec, quantization, request.params, hardware
    )
    try:
        resources.check_fit(estimate, hardware)
    except LaunchError as exc:
        raise LaunchError(
            f"{family.model_name} on {choice.engine}: {exc.message}", code="insufficient_memory"
        ) from None
    return LaunchPlan(
        model_name=family.model_name,
        model_type=request.model_type,
        family=family,
        spec=spec,
        quantization=quantization,
        engine=choice.engine,
        params=dict(request.params),
        estimate=estimate,
    )
