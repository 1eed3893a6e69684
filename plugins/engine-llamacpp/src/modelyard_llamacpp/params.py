"""Setting llama.cpp ``common_params`` fields by dotted name, with type checks and suggestions.

The names are discovered from the ``xllamacpp.CommonParams`` object itself, so every field that
xllamacpp exposes is settable and nothing here goes stale when llama.cpp adds one. Values are
checked against the field's current type before they reach the Cython setter, so a mistake reads
"sampling.top_k takes a whole number, got 'five'" rather than "an integer is required".
"""

from __future__ import annotations

import enum
import json
from typing import Any

from modelyard.errors import InvalidRequest, did_you_mean

from .settings import ALIASES

# Set by the engine from the launch itself, never by a parameter.
OWNED = ("model.",)
# llama.cpp's embedded HTTP server, locked by the loader (see loader.lock_http): a parameter must
# not reopen it (a TCP port, CORS, an API key the caller knows, the slot and props endpoints) nor
# make it write files (slot_save_path).
HTTP_SERVER = frozenset(
    {
        "hostnames",
        "port",
        "api_keys",
        "api_prefix",
        "public_path",
        "ssl_file_key",
        "ssl_file_cert",
        "cors_origins",
        "cors_origins_explicit",
        "cors_methods",
        "cors_headers",
        "cors_credentials",
        "endpoint_slots",
        "endpoint_props",
        "endpoint_metrics",
        "slot_save_path",
        "n_threads_http",
    }
)


def _is_group(value: Any) -> bool:
    """A nested settings object (sampling, cpuparams...) rather than a value."""
    return type(value).__module__.startswith("xllamacpp") and not isinstance(
        value, (enum.Enum, int, float, str, bool, list)
    )


def field_names(params: Any, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted name under ``params``, with its current value."""
    names: dict[str, Any] = {}
    for attr in dir(params):
        if attr.startswith("_"):
            continue
        try:
            value = getattr(params, attr)
        except Exception:  # a getter that fails on a default object is not settable here either
            continue
        if callable(value) and not isinstance(value, enum.Enum):
            continue
        if _is_group(value):
            names.update(field_names(value, f"{prefix}{attr}."))
        else:
            names[f"{prefix}{attr}"] = value
    return names


def _type_name(current: Any) -> str:
    if isinstance(current, enum.Enum):
        members = ", ".join(_short(m.name, type(current)) for m in type(current))
        return f"one of {members}"
    if isinstance(current, bool):
        return "true or false"
    if isinstance(current, int):
        return "a whole number"
    if isinstance(current, float):
        return "a number"
    if isinstance(current, str):
        return "a string"
    if isinstance(current, list):
        return "a list"
    if isinstance(current, dict):
        return "an object"
    return type(current).__name__


def _short(name: str, kind: type[enum.Enum]) -> str:
    """GGML_TYPE_Q8_0 -> q8_0: the member name without the prefix all members share."""
    prefix = _common_prefix([m.name for m in kind])
    return name[len(prefix) :].lower()


def _common_prefix(names: list[str]) -> str:
    if len(names) < 2:
        return ""
    prefix = names[0]
    for name in names[1:]:
        while not name.startswith(prefix):
            prefix = prefix[:-1]
    return prefix[: prefix.rfind("_") + 1]


def coerce(name: str, current: Any, value: Any) -> Any:
    """``value`` checked (and, for enums, converted) against the type of the field's ``current`` value."""
    bad = InvalidRequest(
        f"llama.cpp parameter {name!r} takes {_type_name(current)}, got {value!r}", param=name
    )
    if isinstance(current, enum.Enum):
        kind = type(current)
        if isinstance(value, str):
            wanted = value.lower()
            for member in kind:
                if wanted in (member.name.lower(), _short(member.name, kind)):
                    return member
            raise bad
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return kind(value)
            except ValueError:
                raise bad from None
        raise bad
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        raise bad
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad
    if isinstance(current, str):
        if isinstance(value, str):
            return value
        raise bad
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise bad
        # llama.cpp reads these values (chat template kwargs) as JSON text.
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}
    if isinstance(current, list):
        if not isinstance(value, list):
            raise bad
        if current and isinstance(current[0], float):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise bad
            floats = [float(v) for v in value]
            # Fixed-size arrays (tensor_split has one entry per possible device): pad with zeros.
            return (
                floats + [0.0] * (len(current) - len(floats))
                if len(floats) < len(current)
                else floats
            )
        return value
    return value


def unknown(name: str, known: list[str]) -> InvalidRequest:
    hint = did_you_mean(name, known) or "."
    return InvalidRequest(
        f"unknown llama.cpp parameter {name!r}{hint} Parameters are llama.cpp common_params fields, "
        "nested with dots (sampling.top_k, cpuparams.n_threads), or n_ctx, n_parallel, n_threads, n_gpu_layers, embedding",
        param=name,
    )


def _regroup(assignments: dict[str, Any], known: dict[str, Any]) -> dict[str, Any]:
    """Put back together the keys of dict-valued fields that ``flatten`` split at dots:
    ``default_template_kwargs.enable_thinking`` -> ``default_template_kwargs: {enable_thinking: ...}``."""
    dict_fields = [name for name, value in known.items() if isinstance(value, dict)]
    grouped: dict[str, Any] = {}
    for name, value in assignments.items():
        owner = next((f for f in dict_fields if name.startswith(f"{f}.")), None)
        if owner is None:
            grouped[name] = value
        else:
            grouped.setdefault(owner, {})[name[len(owner) + 1 :]] = value
    return grouped


def apply(params: Any, assignments: dict[str, Any]) -> None:
    """Set each dotted name on the xllamacpp ``CommonParams``; ``InvalidRequest`` for unknown names
    (with close matches) and wrongly typed values."""
    known = field_names(params)
    for name, value in _regroup(assignments, known).items():
        if name.startswith(OWNED):
            raise InvalidRequest(
                f"{name!r} is set by modelyard from the launched model; launch another model instead",
                param=name,
            )
        if name in HTTP_SERVER:
            raise InvalidRequest(
                f"{name!r} configures llama.cpp's own HTTP server, which modelyard keeps closed; "
                "the model is served through modelyard's API only, so remove it",
                param=name,
            )
        if name not in known:
            fields = [n for n in known if n.startswith(f"{name}.")]
            if fields:
                raise InvalidRequest(
                    f"{name!r} is a group of settings: set its fields with dots, e.g. {fields[0]}",
                    param=name,
                )
            raise unknown(name, list(dict.fromkeys([*known, *ALIASES])))
        current = known[name]
        target = params
        *parents, leaf = name.split(".")
        for parent in parents:
            target = getattr(target, parent)
        try:
            setattr(target, leaf, coerce(name, current, value))
        except (TypeError, ValueError, OverflowError, AssertionError) as exc:
            raise InvalidRequest(
                f"llama.cpp parameter {name!r} rejected {value!r}: {exc}", param=name
            ) from None
