"""Commands against a running server: serve, launch, list, terminate, generate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import output
from .options import (
    ByteSize,
    endpoint_option,
    json_option,
    model_type_option,
    parse_params,
    parse_size,
)

if TYPE_CHECKING:
    from ..client import Client


def connect(endpoint: str, api_key: str | None) -> Client:
    from ..client import Client

    return Client(endpoint, api_key=api_key)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9997, show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["critical", "error", "warning", "info", "debug"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--max-body-size",
    type=ByteSize(),
    default="32MiB",
    show_default=True,
    help="Largest request body accepted (bytes, or with a unit: 512KiB, 64MiB, 1GiB); larger is a 413.",
)
@click.option(
    "--request-timeout",
    type=click.FloatRange(min=0),
    default=600,
    show_default=True,
    help="Seconds a request may take before it ends with a 504 (0: no limit); "
    "a model's request_timeout launch option overrides it.",
)
@click.option(
    "--api-key",
    "api_keys",
    multiple=True,
    metavar="KEY[:SCOPES]",
    help="Require this key (repeatable; KEY:inference,manage limits its scopes). Also "
    "MODELYARD_API_KEYS (comma separated) and the store `modelyard keys` manages.",
)
@click.option(
    "--allowed-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host name clients use for this server (repeatable); loopback names always work.",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    metavar="ORIGIN",
    help="A web origin allowed to call the API from a browser (repeatable; default none).",
)
@click.option(
    "--model-root",
    "model_roots",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A folder local model paths may point into (repeatable; default MODELYARD_HOME/models "
    "and the Hugging Face and ModelScope caches).",
)
@click.option(
    "--allow-remote-code",
    is_flag=True,
    help="Let launches set trust_remote_code (runs Python code shipped with model weights).",
)
@click.option(
    "--metrics-open/--metrics-need-key",
    default=False,
    show_default=True,
    help="Serve /metrics without an API key.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=5,
    show_default=True,
    help="Seconds to wait, on SIGTERM or Ctrl-C, for open connections (streams in flight end "
    "at once with an error event) and for runners to stop before they are killed.",
)
@click.option(
    "--cluster",
    metavar="ADDRESS",
    default=None,
    help="Run models on a Ray cluster (its head's HOST:PORT, ray://HOST:PORT, or auto); this "
    "server becomes its supervisor. Needs modelyard[cluster].",
)
@click.option(
    "--placement",
    type=click.Choice(["spread", "pack"]),
    default="spread",
    show_default=True,
    help="On a cluster, which node a launch tries first: the one with the most free memory "
    "(spread, Xinference's idle-first) or the least that fits (pack).",
)
@click.option(
    "--keep-alive",
    default="-1",
    show_default=True,
    help='How long a model stays loaded after its last request, as Ollama takes it: "5m", '
    '"30s", 300 (seconds), 0 (unload after each request), -1 (never). A launch option and a '
    "request's keep_alive field override it. An unloaded model reloads on its next request.",
)
@click.option(
    "--max-loaded-models",
    type=click.IntRange(min=1),
    default=None,
    help="Most models loaded at once; loading one more unloads the least recently used idle "
    "model first (default: no limit but memory).",
)
@click.option(
    "--auto-launch",
    is_flag=True,
    help="A request naming a catalog model that is not running launches it (best spec here).",
)
@click.option(
    "--load-wait",
    type=click.FloatRange(min=0),
    default=120,
    show_default=True,
    help="Seconds a request waits for its model to load on demand before a 503 with progress.",
)
@click.option(
    "--warm-runners/--no-warm-runners",
    default=True,
    show_default=True,
    help="After a launch, keep one idle runner per engine with its modules imported, so that the "
    "next launch on that engine skips its imports (costs that runner's memory; see /status).",
)
def serve(
    host: str,
    port: int,
    log_level: str,
    api_keys: tuple[str, ...],
    allowed_hosts: tuple[str, ...],
    cors_origins: tuple[str, ...],
    model_roots: tuple[str, ...],
    allow_remote_code: bool,
    metrics_open: bool,
    max_body_size: int,
    request_timeout: float,
    shutdown_timeout: float,
    cluster: str | None,
    placement: str,
    keep_alive: str,
    max_loaded_models: int | None,
    auto_launch: bool,
    load_wait: float,
    warm_runners: bool,
) -> None:
    """Run the modelyard server (OpenAI and management API) in the foreground."""
    from ..errors import InvalidRequest
    from ..keepalive import parse_keep_alive
    from ..server import serve as run_server
    from ..server.security import Security

    try:
        idle_seconds = parse_keep_alive(keep_alive, param="--keep-alive")
    except InvalidRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--keep-alive") from None
    security = Security.from_options(
        host=host,
        api_keys=api_keys,
        allowed_hosts=allowed_hosts,
        cors_origins=cors_origins,
        model_roots=model_roots,
        allow_remote_code=allow_remote_code,
        metrics_open=metrics_open,
    )
    run_server(
        host=host,
        port=port,
        log_level=log_level.lower(),
        security=security,
        max_body_size=max_body_size,
        request_timeout=request_timeout,
        shutdown_timeout=shutdown_timeout,
        cluster=cluster,
        placement=placement,
        on_demand={
            "keep_alive": idle_seconds,
            "max_loaded_models": max_loaded_models,
            "auto_launch": auto_launch,
            "load_wait": load_wait,
        },
        warm_runners=warm_runners,
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@endpoint_option
@click.argument("model", required=False)
@click.option("-n", "--model-name", default=None, help="A catalog name (or give MODEL).")
@model_type_option(default="LLM")
@click.option(
    "-en",
    "--model-engine",
    "--engine",
    "model_engine",
    default=None,
    help="Default: the best one here.",
)
@click.option("-f", "--model-format", default=None)
@click.option("-s", "--size-in-billions", "size", default=None)
@click.option("-q", "--quantization", default=None)
@click.option("-u", "--model-uid", default=None)
@click.option(
    "-r",
    "--replica",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runners behind the uid (spread over the nodes on a cluster).",
)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="An engine parameter (repeatable).",
)
@click.option(
    "--wait/--no-wait", default=True, show_default=True, help="Return only when the model is ready."
)
@click.option(
    "--keep-alive",
    default=None,
    help='How long it stays loaded when idle: "5m", 300, 0, -1 (never); default: the server\'s.',
)
@click.option(
    "--register",
    is_flag=True,
    help="Save a model launched by repository id or path as a registration.",
)
@click.pass_context
def launch(
    ctx: click.Context,
    endpoint: str,
    api_key: str | None,
    model: str | None,
    model_name: str | None,
    model_type: str,
    model_engine: str | None,
    model_format: str | None,
    size: str | None,
    quantization: str | None,
    model_uid: str | None,
    replica: int,
    params: tuple[str, ...],
    wait: bool,
    keep_alive: str | None,
    register: bool,
) -> None:
    """Launch MODEL: a catalog name, hf:ORG/REPO[:FILE.gguf], ms:ORG/REPO, or a local .gguf file
    or model folder (inside the server's model roots). Unknown options (--n-ctx 4096,
    --sampling.top_k 20) go to the engine. Prints the engine chosen and why."""
    from .launch_progress import explain_engine, follow_launch

    if model is not None and model.startswith("-"):  # an engine option click took for MODEL
        ctx.args.insert(0, model)
        model = None
    if model and model_name:
        raise click.UsageError(f"unexpected argument {model!r} (-n names the model already)")
    name = model or model_name
    if not name:
        raise click.UsageError("name the model: `modelyard launch MODEL` or -n/--model-name")
    if Path(name).exists():  # a local path: the server needs it absolute
        name = str(Path(name).resolve())
    engine_params = parse_params(params, ctx.args)
    if keep_alive is not None:
        engine_params["keep_alive"] = keep_alive
    if register:
        engine_params["register"] = True
    if replica != 1:
        engine_params["replica"] = replica
    size_b = parse_size(size)
    with connect(endpoint, api_key) as client:
        uid = client.launch_model(
            name,
            model_type=model_type,
            model_engine=model_engine,
            model_uid=model_uid,
            model_format=model_format,
            model_size_in_billions=size_b,
            quantization=quantization,
            wait_ready=False,
            **engine_params,
        )
        if wait:
            follow_launch(client, uid)
            explain_engine(client.describe_model(uid))
    click.echo(f"Model uid: {uid}")


_LIST_COLUMNS = (
    ("UID", "id"),
    ("Type", "model_type"),
    ("Name", "model_name"),
    ("Engine", "model_engine"),
    ("Format", "model_format"),
    ("Size (B)", "model_size_in_billions"),
    ("Quantization", "quantization"),
    ("State", "state"),
    ("Replicas", "replicas"),
    ("Memory", "resident_memory_bytes"),
    ("Abilities", "model_ability"),
)


@click.command("list")
@endpoint_option
@json_option
def list_models(endpoint: str, api_key: str | None, as_json: bool) -> None:
    """Models running on the server."""
    with connect(endpoint, api_key) as client:
        models = list(client.list_models().values())
    if as_json:
        output.print_json(models)
        return
    if not models:
        output.note(f"No model is running on {endpoint}.")
        return
    # Show the state column only when the server reports it.
    columns = [(title, key) for title, key in _LIST_COLUMNS if any(key in m for m in models)]
    rows = [[_cell(m, k) for _, k in columns] for m in models]
    output.print_table(None, [t for t, _ in columns], rows)


def _cell(model: dict[str, Any], key: str) -> Any:
    value = model.get(key)
    if key == "model_size_in_billions" and value is not None:
        return parse_size(value)  # the wire form "0_135" reads as 0.135 in a table
    if key == "resident_memory_bytes" and value is not None:
        return f"{value / 2**20:.0f} MiB"
    if key == "replicas" and isinstance(value, list):  # ready of wanted
        ready = sum(1 for replica in value if replica.get("state") == "ready")
        return f"{ready}/{model.get('replica', len(value))}"
    return value


@click.command()
@endpoint_option
@click.option("-u", "--model-uid", required=True)
def terminate(endpoint: str, api_key: str | None, model_uid: str) -> None:
    """Stop a running model and free its memory."""
    with connect(endpoint, api_key) as client:
        client.terminate_model(model_uid)
    click.echo(f"Terminated {model_uid}.")


@click.command()
@endpoint_option
@click.option("-u", "--model-uid", required=True)
@click.option(
    "-r",
    "--replica",
    type=click.IntRange(min=1),
    required=True,
    help="Replicas to run from now on.",
)
@click.option(
    "--drain-timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds a removed replica may finish its requests (default 60).",
)
def scale(
    endpoint: str, api_key: str | None, model_uid: str, replica: int, drain_timeout: float | None
) -> None:
    """Run N replicas of a running model: new ones load beside the others, removed ones drain."""
    with connect(endpoint, api_key) as client:
        model = client.scale_model(model_uid, replica, drain_timeout)
    places = ", ".join(
        f"{r['index']} ({r['state']}" + (f" on {r['node']})" if r.get("node") else ")")
        for r in model.get("replicas", [])
    )
    click.echo(f"{model_uid} now runs {model.get('replica')} replica(s): {places}")


def sampling_options(f: Any) -> Any:
    f = click.option("--temperature", type=click.FloatRange(0, 2), default=None)(f)
    f = click.option("--max-tokens", type=click.IntRange(min=1), default=None)(f)
    return click.option("--stream/--no-stream", default=True, show_default=True)(f)


def sampling(max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
    found = {"max_tokens": max_tokens, "temperature": temperature}
    return {k: v for k, v in found.items() if v is not None}


def write(text: str) -> None:
    """Print a token now (click flushes; it also drops colours when stdout is not a terminal)."""
    click.echo(text, nl=False)


@click.command()
@endpoint_option
@click.option("-u", "--model-uid", required=True)
@click.option("-p", "--prompt", required=True)
@sampling_options
def generate(
    endpoint: str,
    api_key: str | None,
    model_uid: str,
    prompt: str,
    stream: bool,
    max_tokens: int | None,
    temperature: float | None,
) -> None:
    """Complete a prompt (no chat template), streaming the text as it is generated."""
    from ..client import GenerateModelHandle
    from ..errors import Unsupported

    with connect(endpoint, api_key) as client:
        handle = client.get_model(model_uid)
        if not isinstance(handle, GenerateModelHandle):
            raise Unsupported(
                f"model {model_uid!r} does not generate text; it is {handle.description.get('model_type')}"
            )
        result = handle.generate(prompt, stream=stream, **sampling(max_tokens, temperature))
        if isinstance(result, dict):
            write(result["choices"][0].get("text") or "")
        else:
            for chunk in result:
                for choice in chunk.get("choices") or []:
                    write(choice.get("text") or "")
    write("\n")
