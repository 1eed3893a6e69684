"""Options and argument parsing shared by several commands."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

# Same value as modelyard.client.DEFAULT_ENDPOINT, repeated so that --help need not import httpx.
DEFAULT_ENDPOINT = "http://127.0.0.1:9997"
MODEL_TYPES = ("LLM", "embedding", "rerank")

F = TypeVar("F", bound=Callable[..., Any])


def endpoint_option(f: F) -> F:
    f = click.option(
        "-k",
        "--api-key",
        envvar="MODELYARD_API_KEY",
        default=None,
        help="API key for a server that requires one (env MODELYARD_API_KEY).",
    )(f)
    return click.option(
        "-e",
        "--endpoint",
        envvar="MODELYARD_ENDPOINT",
        default=DEFAULT_ENDPOINT,
        show_default=True,
        help="The modelyard server (env MODELYARD_ENDPOINT).",
    )(f)


def model_type_option(default: str | None = None, required: bool = False) -> Callable[[F], F]:
    return click.option(
        "-t",
        "--model-type",
        metavar="[" + "|".join(MODEL_TYPES) + "]",
        default=default,
        required=required,
        show_default=default is not None,
        callback=_canonical_type,
    )


def _canonical_type(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    for known in MODEL_TYPES:
        if known.lower() == value.lower():
            return known
    raise click.BadParameter(f"{value!r} is not one of {', '.join(MODEL_TYPES)}")


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2,
          "mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$")


class ByteSize(click.ParamType):
    """A size in bytes: 1048576, 512KiB, 64MiB, 1GiB (or the decimal kB/MB/GB)."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        found = _SIZE.match(str(value).lower())
        if found is None or found[2] not in _UNITS or float(found[1]) * _UNITS[found[2]] < 1:
            self.fail(f"{value!r} is not a size such as 1048576, 512KiB, 64MiB or 1GiB", param, ctx)
        return int(float(found[1]) * _UNITS[found[2]])


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print exact data as JSON.")(f)


def parse_size(value: str | None) -> float | None:
    from ..specs import parse_size as parse

    try:
        return parse(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'-s' / '--size-in-billions'") from None


def coerce(text: str) -> Any:
    """A command-line value as the JSON value it most likely means: 4096 → int, true → bool..."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def parse_params(pairs: Sequence[str], extra: Sequence[str]) -> dict[str, Any]:
    """Engine parameters from ``--param key=value`` and from unknown ``--key value`` options.

    Like Xinference, ``--n-ctx 4096`` and ``--n_ctx=4096`` both give ``{"n_ctx": 4096}``; a flag
    without a value (``--flash-attn`` followed by another option or nothing) means true.
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--param'")
        params[key.strip()] = coerce(value)
    args = list(extra)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--") or len(arg) == 2:
            raise click.UsageError(
                f"unexpected argument {arg!r}: engine parameters go as --key value or --param key=value"
            )
        key, sep, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if sep:
            params[key] = coerce(value)
        elif args and not args[0].startswith("--"):
            params[key] = coerce(args.pop(0))
        else:
            params[key] = True
    return params
