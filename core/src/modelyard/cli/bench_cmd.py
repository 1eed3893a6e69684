"""`modelyard bench`: measure any OpenAI-compatible server, several side by side."""

from __future__ import annotations

from pathlib import Path

import click

from . import output


def _levels(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        levels = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(
            f"expected numbers separated by commas, e.g. 1,8; got {value!r}"
        ) from None
    if not levels or any(level < 1 for level in levels):
        raise click.BadParameter(f"every level must be at least 1, got {value!r}")
    return levels


@click.command()
@click.option(
    "--url", "urls", multiple=True, required=True, help="A server's base URL (repeat to compare)."
)
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="The model (uid) at each --url, in order; one for all.",
)
@click.option(
    "--concurrency",
    default="1,8",
    show_default=True,
    callback=_levels,
    help="Concurrent streams, levels separated by commas.",
)
@click.option(
    "--requests",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Requests per level and round.",
)
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Tokens each request generates at most.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Rounds per level; targets alternate their order each round.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every figure (and each run) to this file.",
)
@click.option(
    "--ignore-eos/--stop-at-eos",
    default=True,
    show_default=True,
    help="Generate exactly --max-tokens per request (servers that reject ignore_eos: --stop-at-eos).",
)
@click.option(
    "-k",
    "--api-key",
    envvar="MODELYARD_API_KEY",
    default=None,
    help="API key sent to every --url (env MODELYARD_API_KEY).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Draw tokens/s per level to this PNG (needs matplotlib).",
)
def bench(
    urls: tuple[str, ...],
    models: tuple[str, ...],
    concurrency: list[int],
    requests: int,
    max_tokens: int,
    rounds: int,
    json_path: Path | None,
    ignore_eos: bool,
    api_key: str | None,
    plot_path: Path | None,
) -> None:
    """Streamed chat load: tokens/s (median, min-max over rounds), TTFT p50/p95, and the server's
    CPU per token when it runs on this machine; several --url side by side, alternating."""
    import msgspec

    from .. import benchmark

    if len(models) not in (1, len(urls)):
        raise click.UsageError("give one --model for all the --url, or one per --url, in order")
    names = models if len(models) == len(urls) else models * len(urls)
    targets = [
        benchmark.Target(url, model, ignore_eos, api_key)
        for url, model in zip(urls, names, strict=True)
    ]
    report = benchmark.run(targets, concurrency, requests, max_tokens, rounds, progress=output.note)
    _print(report)
    if json_path is not None:
        json_path.write_bytes(msgspec.json.format(msgspec.json.encode(report), indent=2))
    if plot_path is not None:
        _plot(report, plot_path)


def _print(report: object) -> None:
    from ..benchmark import Report

    assert isinstance(report, Report)
    first = {lv.concurrency: lv.tokens_per_second for lv in report.levels if lv.target == 0}
    output.print_table(
        f"{report.date}, {report.machine}: {report.requests} requests x {report.max_tokens} tokens, "
        f"{report.rounds} rounds",
        [
            "Streams",
            "Target",
            "tok/s (min-max)",
            "vs first",
            "TTFT p50 / p95",
            "CPU ms/token: all / server",
            "Load avg",
        ],
        [
            [
                lv.concurrency,
                f"{lv.url} {lv.model}",
                f"{lv.tokens_per_second:.1f} ({lv.tokens_per_second_min:.1f}-{lv.tokens_per_second_max:.1f})",
                f"{lv.tokens_per_second / first[lv.concurrency]:.2f}"
                if first.get(lv.concurrency)
                else None,
                f"{lv.ttft_p50 * 1000:.0f} / {lv.ttft_p95 * 1000:.0f} ms",
                f"{lv.cpu_ms_per_token:.2f} / {lv.server_cpu_ms_per_token:.2f}"
                if lv.cpu_ms_per_token is not None and lv.server_cpu_ms_per_token is not None
                else None,
                " ".join(f"{load:.1f}" for load in lv.load_averages),
            ]
            for lv in report.levels
        ],
    )


def _plot(report: object, path: Path) -> None:
    from ..benchmark import Report
    from ..errors import InvalidRequest

    assert isinstance(report, Report)
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise InvalidRequest("--plot needs matplotlib: pip install matplotlib") from None
    figure, axes = pyplot.subplots()
    for index in sorted({lv.target for lv in report.levels}):
        mine = [lv for lv in report.levels if lv.target == index]
        axes.errorbar(
            [lv.concurrency for lv in mine],
            [lv.tokens_per_second for lv in mine],
            yerr=[
                [lv.tokens_per_second - lv.tokens_per_second_min for lv in mine],
                [lv.tokens_per_second_max - lv.tokens_per_second for lv in mine],
            ],
            marker="o",
            label=f"{mine[0].url} {mine[0].model}",
        )
    axes.set_xlabel("concurrent streams")
    axes.set_ylabel("tokens/s")
    axes.legend()
    figure.savefig(path)
