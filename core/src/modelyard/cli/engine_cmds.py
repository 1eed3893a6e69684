"""`engine` and `cal-model-mem`: which engine can run a model here, and how much memory it needs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from . import output
from .options import json_option, model_type_option, parse_params, parse_size

if TYPE_CHECKING:
    from ..specs import Family, Hardware, ModelSpec

_ENGINE_OPTION = ("-e", "-en", "--engine", "--model-engine")


def hardware_line(hw: Hardware) -> str:
    accelerators = ", ".join(f"{a.kind}:{a.index} {a.name}" for a in hw.accelerators) or "none"
    return (
        f"This machine: {hw.system} {hw.machine}, {hw.cpu_count} CPUs, "
        f"{output.human_bytes(hw.memory_available)} of {output.human_bytes(hw.memory_total)} RAM free, "
        f"accelerators: {accelerators}"
    )


def _specs(
    family: Family, model_format: str | None, size: float | None, quantization: str | None
) -> list[tuple[ModelSpec, str]]:
    found: list[tuple[ModelSpec, str]] = []
    for spec in family.model_specs:
        if model_format and spec.model_format != model_format:
            continue
        if size is not None and not math.isclose(spec.model_size_in_billions, size):
            continue
        found.extend(
            (spec, quant)
            for quant in spec.quantizations
            if not quantization or quant.lower() == quantization.lower()
        )
    return found


@click.command()
@click.option("-n", "--model-name", required=True)
@model_type_option()
@click.option("-f", "--model-format", default=None)
@click.option("-s", "--size-in-billions", "size", default=None)
@click.option("-q", "--quantization", default=None)
@click.option(*_ENGINE_OPTION, "engine_name", default=None, help="Ask about this engine only.")
@json_option
def engine(
    model_name: str,
    model_type: str | None,
    model_format: str | None,
    size: str | None,
    quantization: str | None,
    engine_name: str | None,
    as_json: bool,
) -> None:
    """For each spec of a model and each installed engine: can it run here, and if not, why not."""
    from .. import envs
    from ..catalog import get_catalog
    from ..matching import choose_engine
    from ..plugins import get_plugin_manager
    from ..resources import probe_hardware

    catalog, pm, hw = get_catalog(), get_plugin_manager(), probe_hardware()
    family = catalog.get(model_name, model_type)  # type: ignore[arg-type]
    size_b = parse_size(size)
    pairs = _specs(family, model_format, size_b, quantization)
    if not pairs:  # let the catalog say what exists
        catalog.select_spec(
            family, model_format=model_format, size=size_b, quantization=quantization
        )
    environments = envs.states(pm, envs.EnvStore())
    results: list[dict[str, Any]] = []
    for spec, quant in pairs:
        choice = choose_engine(
            pm, family, spec, quant, hw, requested=engine_name, environments=environments
        )
        engines: dict[str, dict[str, Any]] = {
            name: {"ok": True, "reason": None} for name in choice.ranked
        }
        engines.update(
            {name: {"ok": False, "reason": why} for name, why in choice.refusals.items()}
        )
        results.append(
            {
                "model_format": spec.model_format,
                "model_size_in_billions": spec.model_size_in_billions,
                "quantization": quant,
                "chosen": choice.engine,
                "engines": engines,
                "explanation": choice.explain(),
            }
        )
    if as_json:
        output.print_json({"model_name": family.model_name, "hardware": hw, "specs": results})
        return
    output.note(hardware_line(hw))
    _print_engine_table(family.model_name, results)
    failed = get_plugin_manager().failed
    for name, err in failed.items():
        output.note(f"plugin {name!r} failed to load: {err}")
    chosen = {r["chosen"] for r in results}
    if len(results) == 1 or len(chosen) == 1:
        first = results[0]
        if first["chosen"]:
            click.echo(f"Would launch on: {first['chosen']}")
        else:
            click.echo(f"No installed engine can run it here: {first['explanation']}")


def _print_engine_table(model_name: str, results: list[dict[str, Any]]) -> None:
    # Quantizations of one spec usually get the same answer: group them into one row.
    grouped: dict[tuple[Any, ...], list[str]] = {}
    for r in results:
        for name, answer in r["engines"].items():
            key = (
                r["model_format"],
                r["model_size_in_billions"],
                name,
                answer["ok"],
                answer["reason"],
                r["chosen"] == name,
            )
            grouped.setdefault(key, []).append(r["quantization"])
    rows = [
        [
            fmt,
            size,
            quants,
            ("* " if chosen else "") + name,
            "yes" if ok else "no",
            "chosen" if chosen else reason,
        ]
        for (fmt, size, name, ok, reason, chosen), quants in grouped.items()
    ]
    output.print_table(
        f"Engines for {model_name}",
        ["Format", "Size (B)", "Quantizations", "Engine", "Runs here", "Why not"],
        rows,
    )


@click.command(
    "cal-model-mem", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option("-n", "--model-name", required=True)
@model_type_option()
@click.option("-s", "--size-in-billions", "size", default=None)
@click.option("-f", "--model-format", default=None)
@click.option("-q", "--quantization", default=None)
@click.option(
    "-c", "--context-length", type=click.IntRange(min=1), default=None, help="Default: the model's."
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=None,
    help="Concurrent sequences. Default: the engine's.",
)
@click.option(
    *_ENGINE_OPTION, "engine_name", default=None, help="Default: the engine that would be chosen."
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An engine parameter (repeatable).",
)
@json_option
@click.pass_context
def cal_model_mem(
    ctx: click.Context,
    model_name: str,
    model_type: str | None,
    size: str | None,
    model_format: str | None,
    quantization: str | None,
    context_length: int | None,
    parallel: int | None,
    engine_name: str | None,
    params: tuple[str, ...],
    as_json: bool,
) -> None:
    """Memory a model needs: weights, KV cache at the context and parallelism, and overhead.

    Engine parameters go through as for `launch` (--n_ctx 8192, --param dtype=float32), so the
    estimate is the one the launch would be admitted on."""
    from .. import resources
    from ..catalog import get_catalog
    from ..memory import estimate_memory
    from ..plugins import get_plugin_manager

    answer = estimate_memory(
        get_plugin_manager(),
        get_catalog(),
        resources.probe_hardware(),
        model_name=model_name,
        model_type=model_type,
        model_format=model_format,
        size=parse_size(size),
        quantization=quantization,
        engine=engine_name,
        context_length=context_length,
        parallel=parallel,
        params=parse_params(params, ctx.args),
    )
    if as_json:
        output.print_json(answer.to_json())
        return
    spec = answer.spec
    click.echo(
        f"{answer.family.model_name} {spec.model_format} {output.cell_text(spec.model_size_in_billions)}B "
        f"{answer.quantization} on {answer.engine or 'no engine (generic estimate)'}"
    )
    click.echo(resources.format_estimate(answer.estimate))
    for option in answer.ignored:
        output.warn(
            f"{answer.engine}'s estimate does not use {option}; pass the engine's own parameter "
            "instead (e.g. --n_ctx / --n_parallel for llama.cpp)"
        )
