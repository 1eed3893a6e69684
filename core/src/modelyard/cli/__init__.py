"""The ``modelyard`` command.

Every command module imports only click at the top; plugins, the catalog, the server and httpx are
imported inside the commands that need them, so ``modelyard --help`` starts in a blink with every
engine plugin installed. Any ``ModelyardError`` (including HTTP errors from a server, which the
client re-raises as one) ends the command with one red line and exit status 1, never a traceback.
"""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from ..errors import ModelyardError
from . import (
    bench_cmd,
    catalog_cmds,
    chat,
    cluster_cmds,
    engine_cmds,
    env_cmds,
    keys_cmds,
    lifecycle_cmds,
    output,
)


class ModelyardGroup(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelyardError as exc:
            output.error(exc.message)
            raise click.exceptions.Exit(1) from None
        except KeyboardInterrupt:
            output.error("interrupted")
            raise click.exceptions.Exit(130) from None


@click.group(cls=ModelyardGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelyard")
def main() -> None:
    """Serve open models on the best engine this machine has, behind the OpenAI API."""


for command in (
    catalog_cmds.plugins,
    catalog_cmds.registrations,
    engine_cmds.engine,
    catalog_cmds.register,
    catalog_cmds.unregister,
    engine_cmds.cal_model_mem,
    env_cmds.env,
    lifecycle_cmds.serve,
    cluster_cmds.supervisor,
    cluster_cmds.worker,
    lifecycle_cmds.launch,
    lifecycle_cmds.list_models,
    lifecycle_cmds.terminate,
    lifecycle_cmds.scale,
    lifecycle_cmds.generate,
    chat.chat,
    bench_cmd.bench,
    keys_cmds.keys,
):
    main.add_command(command)

__all__ = ["main"]
