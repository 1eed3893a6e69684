"""Reading catalog and registration files into family Structs, with errors a user can act on.

A catalog file is a JSON array of family objects, each tagged by ``model_type``; a registration
file is one such object. Decoding goes entry by entry so that an error can name the entry (its
index and ``model_name``) as well as the file and msgspec's ``$`` path of the field.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import msgspec

from ..errors import CatalogError
from ..specs import Family
from .validation import check_family, check_unique

_AT_PATH = re.compile(r" - at `\$(?P<rest>[^`]*)`$")
_JSON_TYPES = {dict: "object", list: "array", str: "str", int: "int", float: "float", bool: "bool"}


def load_families(path: Path) -> list[Family]:
    """Read one catalog file (a JSON array of families); validate every entry and name uniqueness.

    Raises ``CatalogError`` naming the file, the entry (index and model_name), the field's ``$``
    path and the expected type.
    """
    raw = read_json(path)
    if not isinstance(raw, list):
        raise CatalogError(
            f"catalog file {path}: expected `array` of model families at `$`, got `{json_type(raw)}`"
        )
    located = []
    for index, entry in enumerate(raw):
        where = describe_entry(f"catalog file {path}", index, entry)
        family = decode_family(entry, where=where, path=f"$[{index}]")
        located.append((family, where, f"$[{index}]"))
    check_unique(located)
    return [family for family, _, _ in located]


def load_registration(path: Path) -> Family:
    """Read one registration file (a single family object) written by ``Catalog.register``."""
    raw = read_json(path)
    return decode_family(
        raw, where=describe_entry(f"registration file {path}", None, raw), path="$"
    )


def decode_family(entry: Any, *, where: str, path: str = "$") -> Family:
    """Convert one decoded JSON value to a family Struct and check the rules types cannot express."""
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected `object` at `{path}`, got `{json_type(entry)}`")
    try:
        family: Family = msgspec.convert(entry, Family)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{where}: {rebase_error(str(exc), path)}") from None
    check_family(family, where=where, path=path)
    return family


def read_json(path: Path) -> Any:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise CatalogError(f"file {path} is not valid JSON: {_with_line(str(exc), data)}") from None


def describe_entry(origin: str, index: int | None, entry: Any) -> str:
    """'catalog file X, entry 3 (model_name 'qwen3')' — what a user needs to find the entry."""
    parts = [origin]
    if index is not None:
        parts.append(f"entry {index}")
    name = entry.get("model_name") if isinstance(entry, dict) else None
    label = ", ".join(parts)
    return f"{label} (model_name {name!r})" if isinstance(name, str) else label


def rebase_error(message: str, path: str) -> str:
    """Make msgspec's entry-relative ``$.field`` path relative to the file (``$[3].field``), and
    say where a message without a path (a missing field at the top) applies."""
    match = _AT_PATH.search(message)
    if match:
        return f"{message[: match.start()]} - at `{path}{match['rest']}`"
    return f"{message} - at `{path}`"


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _with_line(message: str, data: bytes) -> str:
    """msgspec reports a byte offset; people look for a line and a column."""
    match = re.search(r"\(byte (\d+)\)", message)
    if not match:
        return message
    offset = int(match[1])
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"{message}, line {line} column {column}"
