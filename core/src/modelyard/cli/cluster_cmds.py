"""`modelyard supervisor` and `modelyard worker`: a Ray cluster, Xinference-style.

The supervisor starts a Ray head node on this machine and serves as its supervisor (`serve
--cluster`); a worker asks the supervisor for the cluster's address and starts a Ray worker node
here. Models launched on the supervisor run on whichever node Ray places them on.
"""

from __future__ import annotations

import json
from typing import Any

import click

from . import output
from .lifecycle_cmds import connect
from .options import endpoint_option


def _node_options(f: Any) -> Any:
    f = click.option(
        "--ray-temp-dir",
        default=None,
        help="Ray's folder for this node (two nodes on one machine need one each).",
    )(f)
    f = click.option(
        "--resources",
        default=None,
        metavar="JSON",
        help="Custom resources this node offers, e.g. '{\"gpu_a100\": 2}' (launches ask for them "
        "with node_resources).",
    )(f)
    return click.option(
        "--num-cpus", type=click.IntRange(min=0), default=None, help="CPUs Ray may schedule here."
    )(f)


def _resources(text: str | None) -> dict[str, float]:
    if not text:
        return {}
    try:
        found = json.loads(text)
        return {str(k): float(v) for k, v in found.items()}
    except (ValueError, AttributeError, TypeError):
        raise click.BadParameter(
            "a JSON object of names to amounts, e.g. '{\"gpu_a100\": 2}'", param_hint="--resources"
        ) from None


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("--ray-port", type=click.IntRange(1, 65535), default=6379, show_default=True)
@_node_options
@click.pass_context
def supervisor(
    ctx: click.Context,
    ray_port: int,
    num_cpus: int | None,
    resources: str | None,
    ray_temp_dir: str | None,
) -> None:
    """Start a Ray head node here and serve as the cluster's supervisor.

    Every `modelyard serve` option applies (--host, --port, --api-key ...). Workers join with
    `modelyard worker -e http://THIS_HOST:PORT`. Processes: Ray's head (GCS on --ray-port, a
    raylet, its object store) and this server, which joins Ray as a driver."""
    from ..cluster.nodes import ray_start_argv, start_node, stop_node
    from .lifecycle_cmds import serve

    serve_ctx = serve.make_context("modelyard supervisor", list(ctx.args), parent=ctx)
    host = serve_ctx.params["host"]
    node_ip = None if host in ("0.0.0.0", "::") else host
    argv = ray_start_argv(
        head=True,
        port=ray_port,
        node_ip=node_ip,
        num_cpus=num_cpus,
        resources=_resources(resources),
        temp_dir=ray_temp_dir,
    )
    output.note(f"starting a Ray head node on port {ray_port}")
    node = start_node(argv)
    try:
        serve_ctx.params["cluster"] = f"{node_ip or '127.0.0.1'}:{ray_port}"
        with serve_ctx:
            serve.invoke(serve_ctx)
    finally:
        stop_node(node)


@click.command()
@endpoint_option
@click.option(
    "--host", "node_ip", default=None, help="This node's address as other nodes reach it."
)
@_node_options
def worker(
    endpoint: str,
    api_key: str | None,
    node_ip: str | None,
    num_cpus: int | None,
    resources: str | None,
    ray_temp_dir: str | None,
) -> None:
    """Join the cluster of the supervisor at --endpoint as a Ray worker node (in the foreground).

    Runs Ray's node processes (a raylet and its object store); model runners start here when Ray
    places them here. Ctrl-C stops them and leaves the cluster."""
    from ..cluster.nodes import ray_start_argv, start_node, stop_node

    with connect(endpoint, api_key) as client:
        address = client.cluster_info().get("ray_address")
    if not address:
        raise click.ClickException(
            f"{endpoint} is not a cluster supervisor; start it with `modelyard supervisor`"
        )
    argv = ray_start_argv(
        head=False,
        address=address,
        node_ip=node_ip,
        num_cpus=num_cpus,
        resources=_resources(resources),
        temp_dir=ray_temp_dir,
    )
    output.note(f"joining the Ray cluster at {address}")
    node = start_node(argv)
    try:
        code = node.wait()
    finally:
        stop_node(node)
    if code != 0:  # its processes were killed or lost the head: the supervisor saw the node go
        raise click.ClickException(
            f"this machine's Ray node stopped (exit {code}); its runners are gone (launches with "
            "restart_lost relaunch them on other nodes): start `modelyard worker` again to rejoin"
        )
