"""Catalog commands that work on this machine, with no server: plugins, registrations, register."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import output
from .options import json_option, model_type_option

if TYPE_CHECKING:
    from ..specs import Family


def family_formats(family: Family) -> list[str]:
    return list(dict.fromkeys(spec.model_format for spec in family.model_specs))


@click.command()
@json_option
def plugins(as_json: bool) -> None:
    """Installed engine plugins: distribution, version, hooks, engines; failed ones with their error."""
    from ..errors import ModelyardError
    from ..plugins import get_plugin_manager

    pm = get_plugin_manager()
    infos = pm.describe()
    conflict = None
    try:
        engines = list(pm.engines().values())
    except ModelyardError as exc:  # two plugins claim one engine: still show what is installed
        engines, conflict = [], exc.message
    if as_json:
        output.print_json({"plugins": infos, "engines": engines, "error": conflict})
        return
    if not infos:
        output.note(
            "No engine plugin is installed; install one, e.g. `pip install modelyard-engine-llamacpp`."
        )
    else:
        output.print_table(
            "Plugins",
            ["Plugin", "Distribution", "Version", "Engines", "Hooks", "Error"],
            [[i.name, i.distribution, i.version, i.engines, i.hooks, i.error] for i in infos],
        )
    if engines:
        output.print_table(
            "Engines",
            ["Engine", "Types", "Formats", "Abilities", "Library", "Available"],
            [
                [
                    e.name,
                    e.model_types,
                    e.formats,
                    e.abilities,
                    f"{e.library} {e.library_version or ''}".strip(),
                    "yes" if e.available else f"no: {e.unavailable_reason}",
                ]
                for e in engines
            ],
        )
    if conflict:
        output.error(conflict)


@click.command()
@model_type_option()
@click.option("--detailed", is_flag=True, help="With --json: every field of each family.")
@json_option
def registrations(model_type: str | None, detailed: bool, as_json: bool) -> None:
    """Model families in the catalog: built-in and custom."""
    from ..catalog import family_to_registration, get_catalog

    catalog = get_catalog()
    families = catalog.families(model_type)  # type: ignore[arg-type]
    if as_json:
        rows: list[dict[str, Any]] = []
        for family in families:
            builtin = catalog.is_builtin(family.model_name)
            if detailed:
                rows.append(family_to_registration(family, builtin))
            else:
                rows.append(
                    {
                        "model_name": family.model_name,
                        "model_type": family.model_type,
                        "is_builtin": builtin,
                        "model_ability": list(family.model_ability),
                        "model_formats": family_formats(family),
                    }
                )
        for broken in catalog.broken(model_type):  # type: ignore[arg-type]
            rows.append(
                {
                    "model_name": broken.model_name,
                    "model_type": broken.model_type,
                    "is_builtin": False,
                    "broken": True,
                    "error": broken.error,
                }
            )
        output.print_json(rows)
        return
    rows_table: list[list[Any]] = [
        [
            f.model_name,
            f.model_type,
            "builtin" if catalog.is_builtin(f.model_name) else "custom",
            f.model_ability,
            family_formats(f),
        ]
        for f in families
    ]
    skipped = catalog.broken(model_type)  # type: ignore[arg-type]
    rows_table += [[b.model_name, b.model_type, "broken", "", ""] for b in skipped]
    output.print_table(None, ["Name", "Type", "Source", "Abilities", "Formats"], rows_table)
    for b in skipped:
        output.error(f"registration {b.model_name!r} is broken and skipped: {b.error}")


def read_family(path: Path, model_type: str) -> Family:
    """A family from a JSON file, in our catalog shape or Xinference's registration shape;
    ``model_type`` comes from ``-t`` (a file that says otherwise is refused)."""
    from ..catalog import parse_registration
    from ..errors import CatalogError

    data = path.read_bytes()
    try:
        declared = json.loads(data).get("model_type", model_type)
    except (ValueError, AttributeError):
        declared = model_type  # parse_registration reports what is wrong with it
    if declared != model_type:
        raise CatalogError(
            f"{path}: the file says model_type {declared!r} but -t says {model_type!r}"
        )
    try:
        return parse_registration(data, model_type)  # type: ignore[arg-type]
    except CatalogError as exc:
        raise CatalogError(f"{path}: {exc.message}") from None


@click.command()
@model_type_option(required=True)
@click.option(
    "-f",
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--persist/--no-persist", default=True, show_default=True, help="Keep it across restarts."
)
@click.option(
    "-e", "--endpoint", default=None, help="Register on this running server instead of locally."
)
@click.option("--api-key", envvar="MODELYARD_API_KEY", default=None)
def register(
    model_type: str, path: Path, persist: bool, endpoint: str | None, api_key: str | None
) -> None:
    """Register a custom model family from a JSON file.

    Locally (the default) it is stored under MODELYARD_HOME, where every later modelyard process
    finds it; --no-persist then only validates. With -e it goes to that server.
    """
    family = read_family(path, model_type)
    if endpoint:
        from ..client import Client

        with Client(endpoint, api_key=api_key) as client:
            client.register_model(model_type, path.read_text(), persist=persist)
        click.echo(f"Registered {model_type} model {family.model_name!r} on {endpoint}.")
        return
    from ..catalog import get_catalog

    get_catalog().register(family, persist=persist)
    if persist:
        click.echo(f"Registered {model_type} model {family.model_name!r}.")
    else:
        click.echo(
            f"{family.model_name!r} is valid; not persisted (--no-persist), so nothing was registered."
        )


@click.command()
@model_type_option(required=True)
@click.option("-n", "--model-name", required=True)
@click.option(
    "-e", "--endpoint", default=None, help="Unregister on this running server instead of locally."
)
@click.option("--api-key", envvar="MODELYARD_API_KEY", default=None)
def unregister(model_type: str, model_name: str, endpoint: str | None, api_key: str | None) -> None:
    """Remove a custom model family."""
    if endpoint:
        from ..client import Client

        with Client(endpoint, api_key=api_key) as client:
            client.unregister_model(model_type, model_name)
    else:
        from ..catalog import get_catalog

        get_catalog().unregister(model_type, model_name)  # type: ignore[arg-type]
    click.echo(f"Unregistered {model_type} model {model_name!r}.")
