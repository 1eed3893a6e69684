"""`modelyard env`: the Python environment each engine's runners start in."""

from __future__ import annotations

import click

from . import output
from .options import json_option


@click.group()
def env() -> None:
    """Engine environments: list, install, use an existing interpreter, remove."""


@env.command("list")
@json_option
def list_envs(as_json: bool) -> None:
    """Every engine: its interpreter, engine library and version, available or why not."""
    from ..envs import EnvStore, describe
    from ..plugins import get_plugin_manager

    found = describe(get_plugin_manager(), EnvStore())
    if as_json:
        output.print_json(found)
        return
    output.print_table(
        "Engine environments",
        ["Engine", "Python", "Library", "Available"],
        [
            [
                e.engine,
                e.python + (" (managed)" if e.managed else "" if e.own else " (the server's)"),
                f"{e.library or ''} {e.library_version or ''}".strip(),
                "yes" if e.available else f"no: {e.reason}",
            ]
            for e in found
        ],
    )


@env.command()
@click.argument("engine")
@click.argument("python", type=click.Path(dir_okay=False))
def use(engine: str, python: str) -> None:
    """Run ENGINE's models with the interpreter PYTHON (it must have modelyard and the engine)."""
    from ..envs import EnvStore
    from ..envs import use as use_env
    from ..plugins import get_plugin_manager

    found = use_env(get_plugin_manager(), EnvStore(), engine, python)
    output.note(
        f"{found.engine} now runs with {found.python} ({found.library} {found.library_version})"
    )


@env.command()
@click.argument("engine")
def remove(engine: str) -> None:
    """Forget ENGINE's environment (and delete it when `env install` built it)."""
    from ..envs import EnvStore
    from ..errors import NotFound

    removed = EnvStore().remove(engine)
    if removed is None:
        raise NotFound(f"the {engine} engine has no environment of its own; nothing to remove")
    what = "deleted" if removed.managed else "forgotten (the interpreter itself is untouched)"
    output.note(f"{removed.engine}'s environment {removed.python} {what}")


@env.command()
@click.argument("engine")
@click.option(
    "--variant",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Which build of the engine's libraries to pin (auto: cuda when nvidia-smi sees a GPU).",
)
def install(engine: str, variant: str) -> None:
    """Build a pinned environment for ENGINE under MODELYARD_HOME/envs (uv, from the plugin's pins)."""
    from ..envs import EnvStore
    from ..envs.install import install_env
    from ..plugins import get_plugin_manager
    from ..resources import probe_hardware

    if variant == "auto":
        gpus = [a for a in probe_hardware().accelerators if a.kind == "cuda"]
        variant = "cuda" if gpus else "cpu"
        output.note(f"{engine}: the {variant} variant ({len(gpus)} CUDA device(s) seen here)")
    found = install_env(get_plugin_manager(), EnvStore(), engine, variant, say=output.note)
    output.note(
        f"{found.engine} is ready in {found.python} ({found.library} {found.library_version})"
    )
