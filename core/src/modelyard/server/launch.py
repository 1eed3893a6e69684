"""Reading Xinference's launch payload (``POST /v1/models``) into a ``LaunchRequest``.

xinference-client always sends every key, nulls included, and merges engine options in at the top
level; so: the known keys are typed, the Xinference-only keys are accepted when null or default,
and every other top-level key is an engine parameter, passed through with its name as written
(dotted names such as ``sampling.top_k`` address nested engine settings). The engine rejects
parameters it does not know, naming them.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request

from ..errors import InvalidRequest, Unsupported
from ..references import as_reference
from ..schemas import check_json_ints
from ..specs import LaunchRequest, parse_size
from .errors import invalid_body

# LaunchRequest's own fields; the size is parsed from Xinference's forms, params are the rest.
_TYPED = frozenset(LaunchRequest.__struct_fields__) - {"model_size_in_billions", "params"}
# Xinference launch options with no modelyard meaning: fine when null/empty, refused when set.
_UNSUPPORTED = {
    "peft_model_config": "LoRA adapters are not supported yet",
    "replica_config": "per-replica configuration is not supported",
    "enable_virtual_env": "per-model virtual environments are not supported; install the engine plugin instead",
    "virtual_env_packages": "per-model virtual environments are not supported; install the engine plugin instead",
    "virtual_env_find_links": "per-model virtual environments are not supported; install the engine plugin instead",
    "model_python_executable": "runners use the server's Python; a per-model interpreter is not supported",
    "envs": "per-model environment variables are not supported; set them for `modelyard serve`",
}
# Accepted for compatibility and ignored: one local worker serves every model.
_IGNORED = ("worker_ip", "n_worker")


def _is_unset(value: Any) -> bool:
    return value is None or value is False or value == [] or value == {} or value == ""


def parse_wait_ready(raw: str | None) -> bool:
    """``?wait_ready=`` as the sync (``False``) and async (``false``) clients send it."""
    if raw is None:
        return True
    text = raw.strip().lower()
    if text in ("true", "1", "yes", "on", ""):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise InvalidRequest(f"wait_ready must be true or false, got {raw!r}", param="wait_ready")


def query_int(request: Request, name: str, *, low: int = 1, high: int | None = None) -> int | None:
    """An integer query parameter in [low, high] (None when absent); a 400 naming it otherwise."""
    raw = request.query_params.get(name)
    if raw is None or not raw.strip():
        return None
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < low or (high is not None and value > high):
        raise InvalidRequest(f"{name} must be a whole number {bounds}, got {raw!r}", param=name)
    return value


def parse_launch(payload: Any) -> LaunchRequest:
    if not isinstance(payload, dict):
        raise InvalidRequest(
            f'the launch body must be a JSON object such as {{"model_name": "..."}}, got {type(payload).__name__}'
        )
    if not isinstance(payload.get("model_name"), str) or not payload["model_name"].strip():
        raise InvalidRequest(
            "Invalid input. Please specify the `model_name` field.", param="model_name"
        )
    fields: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        if key in _TYPED:
            if value is not None:
                fields[key] = value
        elif key == "model_size_in_billions":
            try:
                fields[key] = parse_size(value)
            except (ValueError, TypeError) as exc:
                raise InvalidRequest(f"invalid model_size_in_billions: {exc}", param=key) from None
        elif key in _UNSUPPORTED:
            if not _is_unset(value):
                raise Unsupported(
                    f"{key}: {_UNSUPPORTED[key]}; remove it from the launch request", param=key
                )
        elif key in _IGNORED:
            if key == "n_worker" and value not in (None, 1):
                raise Unsupported(
                    "n_worker: a model runs in one worker; remove n_worker or set it to 1",
                    param=key,
                )
        elif value is not None:
            # An engine parameter; a null one means "the engine's default", so it is left out.
            params[key] = value
    fields["params"] = params
    try:
        check_json_ints(payload, "$")
    except ValueError as exc:
        raise InvalidRequest(f"invalid launch request: {exc}") from None
    try:
        launch = msgspec.convert(fields, LaunchRequest)
    except msgspec.ValidationError as exc:
        raise invalid_body(exc, "launch request") from None
    # hf:ORG/REPO, ms:ORG/REPO or a path: a model without a catalog entry.
    return as_reference(launch)
