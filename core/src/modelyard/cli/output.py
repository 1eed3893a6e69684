"""Printing for the CLI: rich tables for people, exact JSON for machines, one red line for errors.

rich is imported inside the functions so that ``modelyard --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click
import msgspec

if TYPE_CHECKING:
    from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # click's CliRunner swaps sys.stdout/stderr per invocation: bind to the current ones each time.
    file = sys.stderr if stderr else sys.stdout
    # Piped output (grep, files) should not fold cells at 80 columns: let tables take their width.
    width = None if _isatty(file) or os.environ.get("COLUMNS") else 1000
    return Console(file=file, width=width, soft_wrap=False, highlight=False)


def _isatty(file: object) -> bool:
    isatty = getattr(file, "isatty", None)
    return bool(isatty and isatty())


def print_json(data: Any) -> None:
    """Exact data, as the API would return it (Structs become plain JSON)."""
    click.echo(msgspec.json.format(msgspec.json.encode(data), indent=2).decode())


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(cell) for cell in row))
    console().print(table)


def cell_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set):
        return ", ".join(cell_text(item) for item in value) or "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def error(message: str) -> None:
    """One red line on stderr (no markup parsing: messages may contain brackets)."""
    console(stderr=True).print(f"Error: {message}", style="bold red", markup=False, soft_wrap=True)


def warn(message: str) -> None:
    console(stderr=True).print(f"Warning: {message}", style="yellow", markup=False, soft_wrap=True)


def note(message: str) -> None:
    console(stderr=True).print(message, style="dim", markup=False, soft_wrap=True)


def human_bytes(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
