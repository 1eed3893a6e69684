"""Xinference's registration JSON, converted to and from our family Structs.

xinference-client posts a family as a JSON string: version-2 families whose ``model_specs`` each
carry ``model_id``/``model_hub``/``model_uri``/``model_file_name_template`` and one
``quantization`` (or, in version 1, ``quantizations``). A ``model_uri`` ("file:///..." or a plain
path) is a local source. ``virtualenv.packages`` is kept; Xinference's other extra keys
(cache_config, virtualenv's index settings, ...) are ignored;
keys we read must have the right type, checked by msgspec so the error keeps its ``$`` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgspec
from msgspec import Struct

from ..errors import CatalogError
from ..specs import Family, ModelType, parse_size
from .loader import decode_family, describe_entry, json_type, rebase_error

_HUBS = ("huggingface", "modelscope")
# Canonical spellings, so "int4", "fp8" and "8bits" from older registrations pass our rules.
_CANONICAL = {
    "int2": "Int2",
    "int3": "Int3",
    "int4": "Int4",
    "int8": "Int8",
    "8bits": "Int8",
    "4bits": "Int4",
    "fp8": "FP8",
    "fp4": "FP4",
    "nvfp4": "NVFP4",
    "mxfp4": "MXFP4",
}
# Xinference abilities with no counterpart here that only describe a flavour of one we have.
_DROPPED_ABILITIES = {"hybrid"}
# Xinference's default when a custom LLM omits it (DEFAULT_CONTEXT_LENGTH).
_DEFAULT_CONTEXT = 2048
_DEFAULT_RERANK_TOKENS = 512


class _XSpec(Struct):
    model_format: str
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    quantizations: list[str] | None = None
    model_id: str | None = None
    model_hub: str | None = None
    model_uri: str | None = None
    model_file_name_template: str | None = None
    model_revision: str | None = None


class _XFamily(Struct):
    model_name: str
    model_specs: list[_XSpec]
    version: int = 2
    model_description: str | None = None
    model_lang: list[str] | None = None
    language: list[str] | None = None
    model_ability: list[str] | None = None
    context_length: int | None = None
    model_family: str | None = None
    chat_template: str | None = None
    stop_token_ids: list[int] | None = None
    stop: list[str] | None = None
    architectures: list[str] | None = None
    reasoning_start_tag: str | None = None
    reasoning_end_tag: str | None = None
    tool_parser: str | None = None
    dimensions: int | None = None
    max_tokens: int | None = None
    type: str | None = None
    virtualenv: dict[str, Any] | None = None


def parse_registration(text: str | bytes, model_type: ModelType) -> Family:
    """The ``model`` string of a registration POST, decoded and converted."""
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise CatalogError(f"registration: `model` is not valid JSON ({exc})") from None
    return family_from_registration(data, model_type)


def family_from_registration(data: dict[str, Any], model_type: ModelType) -> Family:
    """Convert an Xinference registration (or our own family dict) to a validated family."""
    where = describe_entry("registration", None, data)
    if not isinstance(data, dict):
        raise CatalogError(f"{where}: expected `object` at `$`, got `{json_type(data)}`")
    specs = data.get("model_specs")
    if isinstance(specs, (list, tuple)) and any(
        isinstance(s, dict) and "sources" in s for s in specs
    ):
        # Already our shape (e.g. an entry of the detailed listing posted back): drop its listing-only key.
        ours = {k: v for k, v in data.items() if k != "is_builtin"}
        return decode_family({**ours, "model_type": model_type}, where=where)
    try:
        xfamily = msgspec.convert(data, _XFamily)
    except msgspec.ValidationError as exc:
        raise CatalogError(f"{where}: {rebase_error(str(exc), '$')}") from None
    ours = _family_dict(xfamily, model_type, where)
    ours["model_specs"] = [
        spec
        for index, xspec in enumerate(xfamily.model_specs)
        for spec in _specs(xspec, where, index, model_type)
    ]
    return decode_family(ours, where=where)


def family_to_registration(family: Family, is_builtin: bool) -> dict[str, Any]:
    """Our family as a plain dict plus ``is_builtin``: the management API's detailed listing."""
    data: dict[str, Any] = msgspec.json.decode(
        msgspec.json.encode(family)
    )  # JSON types: lists, not tuples
    data["is_builtin"] = is_builtin
    return data


def _family_dict(x: _XFamily, model_type: ModelType, where: str) -> dict[str, Any]:
    ours: dict[str, Any] = {"model_type": model_type, "model_name": x.model_name, "version": 2}
    if x.model_description:
        ours["model_description"] = x.model_description
    lang = x.model_lang if x.model_lang is not None else x.language
    if lang:
        ours["model_lang"] = lang
    if x.architectures:
        ours["architectures"] = x.architectures
    if x.model_ability is not None:
        ours["model_ability"] = [a for a in x.model_ability if a not in _DROPPED_ABILITIES]
    if x.virtualenv and x.virtualenv.get("packages"):
        ours["virtualenv"] = {"packages": x.virtualenv["packages"]}
    if model_type == "LLM":
        if x.model_ability is None:
            raise CatalogError(
                f'{where}: missing `$.model_ability`; expected e.g. ["chat"] or ["generate"]'
            )
        ours["context_length"] = x.context_length or _DEFAULT_CONTEXT
        for key in (
            "model_family",
            "chat_template",
            "reasoning_start_tag",
            "reasoning_end_tag",
            "tool_parser",
        ):
            if getattr(x, key) is not None:
                ours[key] = getattr(x, key)
        ours["stop_token_ids"] = x.stop_token_ids or []
        ours["stop"] = x.stop or []
    elif model_type == "embedding":
        for key in ("dimensions", "max_tokens"):
            if getattr(x, key) is None:
                raise CatalogError(
                    f"{where}: missing `$.{key}`; an embedding model expected an `int` there"
                )
        ours["dimensions"], ours["max_tokens"] = x.dimensions, x.max_tokens
    else:
        ours["max_tokens"] = x.max_tokens or _DEFAULT_RERANK_TOKENS
        ours["type"] = x.type if x.type not in (None, "unknown") else "normal"
    return ours


def _specs(x: _XSpec, where: str, index: int, model_type: ModelType) -> list[dict[str, Any]]:
    path = f"$.model_specs[{index}]"
    quantizations = x.quantizations or ([x.quantization] if x.quantization else [])
    if not quantizations:
        if x.model_format != "pytorch":
            raise CatalogError(
                f'{where}: missing `{path}.quantization`; expected e.g. "Q4_K_M" or "Int4"'
            )
        quantizations = ["none"]
    quantizations = [_CANONICAL.get(q.lower(), q) for q in quantizations]
    size = _size(x, where, path, model_type)
    base = {"model_format": x.model_format, "model_size_in_billions": size}
    local = _local_path(x.model_uri) if x.model_uri else None
    hub = x.model_hub or "huggingface"
    if x.model_id and hub not in _HUBS:
        raise CatalogError(f"{where}: `{path}.model_hub` is {hub!r}; expected one of {list(_HUBS)}")
    if not x.model_id and not local:
        raise CatalogError(
            f"{where}: `{path}` has neither `model_id` nor `model_uri`; expected one of them"
        )
    # Xinference may template the repository id by quantization; ours are literal: one spec each.
    groups = (
        [[q] for q in quantizations]
        if x.model_id and "{quantization}" in x.model_id
        else [quantizations]
    )
    specs = []
    for group in groups:
        sources = []
        if local:
            sources.append(_source("local", local, x))
        if x.model_id:
            sources.append(_source(hub, x.model_id.replace("{quantization}", group[0]), x))
        specs.append({**base, "quantizations": group, "sources": sources})
    return specs


def _source(hub: str, model_id: str, x: _XSpec) -> dict[str, Any]:
    source: dict[str, Any] = {"hub": hub, "model_id": model_id}
    if x.model_file_name_template:
        source["file_name_template"] = x.model_file_name_template
    if x.model_revision and hub != "local":
        source["revision"] = x.model_revision
    return source


def _local_path(uri: str) -> str:
    """ "file:///models/x" or "/models/x" -> "/models/x"."""
    if uri.startswith("file://"):
        parsed = urlparse(uri)
        return (
            unquote(parsed.netloc + parsed.path)
            if parsed.netloc not in ("", "localhost")
            else unquote(parsed.path)
        )
    return uri


def _size(x: _XSpec, where: str, path: str, model_type: ModelType) -> float:
    try:
        size = parse_size(x.model_size_in_billions)
    except ValueError as exc:
        raise CatalogError(f"{where}: {exc} - at `{path}.model_size_in_billions`") from None
    if size is not None:
        return size
    # Xinference's embedding and rerank specs carry no size; local weights tell it.
    if x.model_uri and model_type != "LLM":
        weights = _weight_bytes(Path(_local_path(x.model_uri)).expanduser())
        if weights:
            return max(weights / 4 / 1e9, 1e-6)  # sentence-transformers checkpoints are float32
    raise CatalogError(
        f"{where}: missing `{path}.model_size_in_billions`; expected a number of billions of "
        'parameters such as 7, 0.5 or "0_5" (0.11 for a BERT-base model)'
    )


def _weight_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    files = [p for p in path.rglob("*") if p.is_file()]
    # A checkpoint often ships the same weights twice (safetensors and .bin): count one format.
    for suffixes in ({".safetensors"}, {".bin", ".pt", ".gguf"}):
        found = sum(p.stat().st_size for p in files if p.suffix in suffixes)
        if found:
            return found
    return 0
