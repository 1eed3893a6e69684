"""``modelyard keys``: the API key store under MODELYARD_HOME, edited on the server's machine.

A running server re-reads the store on its next request, so a new key works and a revoked key
stops working at once, without a restart.
"""

from __future__ import annotations

import datetime

import click

from . import output
from .options import json_option

SCOPE_NAMES = ("inference", "manage", "admin")


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored hashed under MODELYARD_HOME)."""


@keys.command()
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPE_NAMES, case_sensitive=False),
    help="What the key may do (repeatable; default inference).",
)
@click.option("--name", default="", help="A note to tell keys apart.")
@json_option
def create(scopes: tuple[str, ...], name: str, as_json: bool) -> None:
    """Make a key; it is printed once and only its hash is kept."""
    from ..keys import KeyStore, parse_scopes

    key, record = KeyStore().create(parse_scopes(scopes or ("inference",)), name)
    if as_json:
        output.print_json({"key": key, "id": record.id, "scopes": record.scopes})
        return
    click.echo(key)
    output.note(f"key {record.id} ({', '.join(record.scopes)}): copy it now, it is not shown again")


@keys.command("list")
@json_option
def list_keys(as_json: bool) -> None:
    """The keys in the store (ids and scopes; the keys themselves are not kept)."""
    import msgspec

    from ..keys import KeyStore

    records = KeyStore().records()
    if as_json:
        output.print_json(
            [{k: v for k, v in msgspec.to_builtins(r).items() if k != "sha256"} for r in records]
        )
        return
    if not records:
        output.note("No API keys in the store.")
        return
    rows = [
        [r.id, r.name or None, r.scopes, _when(r.created), _when(r.revoked) if r.revoked else None]
        for r in records
    ]
    output.print_table(None, ["ID", "Name", "Scopes", "Created", "Revoked"], rows)


@keys.command()
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke a key by its id (or the key itself); a running server refuses it at once."""
    from ..keys import KeyStore

    record = KeyStore().revoke(key_id)
    click.echo(f"Revoked {record.id}.")


def _when(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp).isoformat(timespec="seconds")
