"""From a LaunchRequest to a LaunchPlan: family, spec, engine, and a memory check, before any process.

Everything here is quick and decided in the server, so a launch that cannot work fails at once with
the reason (unknown model, no spec fits, every engine's refusal, the memory numbers) and never starts
a runner. Downloading the weights comes after, in ``ModelManager``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import msgspec

from ..errors import InvalidRequest, LaunchError
from ..plugins import PluginManager
from ..specs import Estimate, Family, Hardware, Hub, LaunchRequest, ModelSpec, ModelType


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
    hub: Hub | None = None
    max_pending: int | None = None
    env: dict[str, str] = {}
    enable_thinking: bool | None = None
    request_timeout: float | None = None
    restart_unresponsive: bool = False
    restart_lost: bool = False
    worker_ip: str | None = None
    node_resources: dict[str, float] = {}
    replica: int = 1  # runners the model starts with
    node_ids: list[str] = []  # on a cluster: the node chosen for each replica
    # Why this engine: the matcher's explanation (chosen, the others that could, who refused).
    engine_reason: str | None = None
    keep_alive: str | float | None = None  # as the launch asked; None: the server's default


def plan_launch(
    request: LaunchRequest,
    *,
    pm: PluginManager,
    catalog: CatalogLike,
    hardware: Hardware,
    family: Family | None = None,
) -> LaunchPlan:
    """``family``: one read from the weights (a launch by repository id or path) instead of the
    catalog's entry for ``request.model_name``."""
    from .. import envs, matching, resources  # colleagues' modules; imported when a launch happens
    from ..keepalive import parse_keep_alive

    if request.keep_alive is not None:
        parse_keep_alive(request.keep_alive)  # a bad one is a 400 before anything starts
    if family is None:
        family = catalog.get(request.model_name, request.model_type)
    spec, quantization = catalog.select_spec(
        family,
        model_format=request.model_format,
        size=request.model_size_in_billions,
        quantization=request.quantization,
    )
    choice = matching.choose_engine(
        pm,
        family,
        spec,
        quantization,
        hardware,
        requested=request.model_engine,
        environments=envs.states(pm, envs.EnvStore()),
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
        resources.check_fit(resources.times(estimate, request.replica), hardware)
    except LaunchError as exc:
        replicas = f" in {request.replica} replicas" if request.replica > 1 else ""
        raise LaunchError(
            f"{family.model_name} on {choice.engine}{replicas}: {exc.message}",
            code="insufficient_memory",
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
        path=_local_weights(request.model_path),
        hub=request.download_hub,
        max_pending=request.request_limits,
        env=_device_env(request.gpu_idx, hardware, request.replica),
        enable_thinking=request.enable_thinking,
        request_timeout=request.request_timeout,
        restart_unresponsive=request.restart_unresponsive,
        restart_lost=request.restart_lost,
        replica=request.replica,
        worker_ip=request.worker_ip,
        node_resources=dict(request.node_resources),
        engine_reason=choice.explain(),
        keep_alive=request.keep_alive,
    )


def _local_weights(model_path: str | None) -> str | None:
    """``model_path``: weights already on disk, used as they are (checked before any runner starts)."""
    if model_path is None:
        return None
    path = Path(model_path).expanduser()
    if not path.is_absolute() or not path.exists():
        raise InvalidRequest(
            f"model_path {model_path!r} does not exist (an absolute file or directory path is needed)",
            param="model_path",
        )
    return str(path)


def _device_env(
    gpu_idx: int | list[int] | None, hardware: Hardware, replica: int = 1
) -> dict[str, str]:
    """``gpu_idx`` pins the runners to those CUDA devices, the way engines expect it: by
    environment; replicas share them out evenly (``replica_devices``)."""
    if gpu_idx is None:
        return {}
    devices = [gpu_idx] if isinstance(gpu_idx, int) else gpu_idx
    if not devices or any(isinstance(d, bool) or d < 0 for d in devices):
        raise InvalidRequest(
            f"gpu_idx must be device numbers ≥ 0, got {gpu_idx!r}", param="gpu_idx"
        )
    if len(devices) % replica:
        raise InvalidRequest(
            f"gpu_idx {devices} cannot be shared evenly by {replica} replicas: give each "
            "replica the same number of devices",
            param="gpu_idx",
        )
    present = sum(1 for a in hardware.accelerators if a.kind == "cuda")
    missing = [d for d in devices if d >= present]
    if missing:
        raise InvalidRequest(
            f"gpu_idx {missing} does not exist here: this machine has {present} CUDA device(s)"
            + (f" (0 to {present - 1})" if present else ""),
            param="gpu_idx",
        )
    return {"CUDA_VISIBLE_DEVICES": ",".join(str(d) for d in devices)}


def replica_devices(plan: LaunchPlan, index: int) -> dict[str, str]:
    """The CUDA devices of replica ``index``: its even share of the launch's ``gpu_idx``."""
    devices = plan.env.get("CUDA_VISIBLE_DEVICES")
    if devices is None or plan.replica == 1:
        return {}
    listed = devices.split(",")
    per = len(listed) // plan.replica
    share = index % plan.replica
    return {"CUDA_VISIBLE_DEVICES": ",".join(listed[share * per : (share + 1) * per])}
