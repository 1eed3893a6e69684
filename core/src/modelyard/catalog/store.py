"""The catalog: built-in families plus custom registrations persisted under ``MODELYARD_HOME``.

Custom families live one per file in ``<home>/registrations/<model_type>/<model_name>.json``,
written atomically, so a crash or a failed write never leaves a half-registered model. Names are
unique across all model types, ignoring case, so that a name alone finds one model.

A registration file that cannot be used (invalid JSON, a wrong field, a name taken twice) is
skipped with a warning naming the file and the reason, and listed by ``broken()``: one bad file
never keeps the rest of the catalog, built-ins included, from serving. Temporary files that an
interrupted write left behind are removed when the catalog loads.
"""

from __future__ import annotations

import difflib
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import msgspec

from ..errors import CatalogError, Conflict, InvalidRequest, LaunchError, ModelNotFound
from ..home import home_dir, write_atomic
from ..specs import Family, ModelSpec, ModelType, parse_size
from .loader import decode_family, load_registration

MODEL_TYPES: tuple[ModelType, ...] = ("LLM", "embedding", "rerank")
# A temporary file this old is no write in progress (those take milliseconds) but a dead one's.
STALE_TMP_SECONDS = 60.0

log = logging.getLogger("modelyard.catalog")


class BrokenRegistration(msgspec.Struct, frozen=True):
    """A registration file that was skipped, and why."""

    model_name: str  # the file's name without .json
    model_type: ModelType
    path: str
    error: str


class Catalog:
    """Every family a launch can name. Thread-safe; one per registrations directory."""

    def __init__(
        self,
        builtins: Iterable[Family] = (),
        *,
        registrations_dir: Path | None = None,
        load_registrations: bool = True,
    ) -> None:
        self._lock = threading.RLock()
        self._families: dict[str, Family] = {}  # lower-cased name -> family, builtins first
        self._builtin: set[str] = set()
        self._broken: dict[str, BrokenRegistration] = {}  # lower-cased file stem -> why
        self._dir = registrations_dir
        for family in builtins:
            key = family.model_name.lower()
            if key in self._families:
                raise CatalogError(
                    f"built-in model {family.model_name!r} is defined twice (as {self._families[key].model_type} "
                    f"and {family.model_type}); expected unique names"
                )
            self._families[key] = family
            self._builtin.add(key)
        if load_registrations:
            self._load_registrations()

    @property
    def registrations_dir(self) -> Path:
        return self._dir if self._dir is not None else home_dir() / "registrations"

    def families(self, model_type: ModelType | None = None) -> list[Family]:
        with self._lock:
            return [
                f
                for f in self._families.values()
                if model_type is None or f.model_type == model_type
            ]

    def get(self, name: str, model_type: ModelType | None = None) -> Family:
        """The family called ``name`` (case-insensitive); ``ModelNotFound`` lists close names."""
        with self._lock:
            family = self._families.get(name.lower())
            if family is not None and (model_type is None or family.model_type == model_type):
                return family
            candidates = [f.model_name for f in self.families(model_type)]
            broken = self._broken.get(name.lower())
        kind = f"{model_type} model" if model_type else "model"
        message = f"{kind} {name!r} is not in the catalog"
        if broken is not None:
            raise ModelNotFound(
                f"{message}: its registration file {broken.path} is broken ({broken.error}); "
                f"fix the file and restart, or unregister {broken.model_name!r} and register it again",
                param="model_name",
            )
        if family is not None:
            message += f" (it is registered as {family.model_type})"
        close = close_matches(name, candidates)
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        else:
            message += "; `modelyard registrations` lists every model"
        raise ModelNotFound(message, param="model_name")

    def broken(self, model_type: ModelType | None = None) -> list[BrokenRegistration]:
        """Registration files skipped at load, with the reason (fix or unregister them)."""
        with self._lock:
            return [
                b for b in self._broken.values() if model_type is None or b.model_type == model_type
            ]

    def is_builtin(self, name: str) -> bool:
        return name.lower() in self._builtin

    def register(self, family: Family, *, persist: bool = True) -> None:
        """Add a custom family; with ``persist`` it survives restarts. Nothing changes on failure."""
        model_type = family.model_type
        # Structs built in Python skip msgspec's constraints; a round trip applies them.
        where = f"registration of {family.model_name!r}"
        decode_family(msgspec.to_builtins(family), where=where)
        check_local_sources(family)
        key = family.model_name.lower()
        with self._lock:
            existing = self._families.get(key)
            if existing is not None:
                what = "a built-in" if key in self._builtin else "an already registered"
                raise Conflict(
                    f"model_name {family.model_name!r} is taken by {what} {existing.model_type} model "
                    f"{existing.model_name!r}; choose another name"
                    + ("" if key in self._builtin else " or unregister that one first"),
                    param="model_name",
                )
            if persist:
                path = self._path(model_type, family.model_name)
                broken = self._broken.get(key)
                if broken is not None:
                    raise Conflict(
                        f"model_name {family.model_name!r} belongs to the broken registration file "
                        f"{broken.path} ({broken.error}); fix that file, or unregister "
                        f"{broken.model_name!r} to delete it, then register again",
                        param="model_name",
                    )
                if path.exists():  # written by another process (the CLI) since this catalog loaded
                    raise Conflict(
                        f"model_name {family.model_name!r} is already registered in {path}; "
                        "choose another name or unregister it first",
                        param="model_name",
                    )
                write_atomic(
                    path, msgspec.json.format(msgspec.json.encode(family), indent=2) + b"\n"
                )
            self._families[key] = family

    def unregister(self, model_type: ModelType, name: str) -> None:
        """Remove a custom family and its file. Built-ins cannot be removed."""
        key = name.lower()
        with self._lock:
            broken = self._broken.get(key)
            if broken is not None and broken.model_type == model_type:
                Path(broken.path).unlink(missing_ok=True)
                del self._broken[key]
                return
            family = self._families.get(key)
            if family is None or family.model_type != model_type:
                custom = [
                    f.model_name
                    for f in self.families(model_type)
                    if f.model_name.lower() not in self._builtin
                ]
                close = close_matches(name, custom)
                hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                raise ModelNotFound(
                    f"no custom {model_type} model is registered as {name!r}{hint}",
                    param="model_name",
                )
            if key in self._builtin:
                raise Conflict(
                    f"{name!r} is a built-in {model_type} model and cannot be unregistered"
                )
            self._path(model_type, family.model_name).unlink(missing_ok=True)
            del self._families[key]

    def select_spec(
        self,
        family: Family,
        *,
        model_format: str | None = None,
        size: float | int | str | None = None,
        quantization: str | None = None,
    ) -> tuple[ModelSpec, str]:
        return select_spec(family, model_format=model_format, size=size, quantization=quantization)

    def _path(self, model_type: ModelType, name: str) -> Path:
        return self.registrations_dir / model_type / f"{name}.json"

    def _load_registrations(self) -> None:
        root = self.registrations_dir
        for model_type in MODEL_TYPES:
            folder = root / model_type
            if not folder.is_dir():
                continue
            _remove_stale_temporaries(folder)
            for path in sorted(folder.glob("*.json")):
                try:
                    self._load_registration(path, model_type)
                except CatalogError as exc:
                    log.warning("skipping registration file %s: %s", path, exc.message)
                    self._broken[path.stem.lower()] = BrokenRegistration(
                        path.stem, model_type, str(path), exc.message
                    )

    def _load_registration(self, path: Path, model_type: ModelType) -> None:
        family = load_registration(path)
        if family.model_type != model_type:
            raise CatalogError(
                f"registration file {path}: `$.model_type` is {family.model_type!r}; "
                f"expected {model_type!r} (the folder it is in)"
            )
        key = family.model_name.lower()
        if key in self._families:
            raise CatalogError(
                f"registration file {path}: model_name {family.model_name!r} at `$.model_name` "
                "is already used by another model; expected a unique name (rename or delete this file)"
            )
        self._families[key] = family


def _remove_stale_temporaries(folder: Path) -> None:
    """``write_atomic`` leaves ``.<name>.json.XXXX.tmp`` behind when killed mid-write."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > STALE_TMP_SECONDS:
                tmp.unlink()
                log.info("removed %s, left by an interrupted registration write", tmp)
        except OSError:
            pass  # gone already, or not ours to remove


def select_spec(
    family: Family,
    *,
    model_format: str | None = None,
    size: float | int | str | None = None,
    quantization: str | None = None,
) -> tuple[ModelSpec, str]:
    """The first spec (in catalog order) that fits the filters, and the quantization to use: the
    one asked for, spelled as the catalog spells it, or the spec's first (its default)."""
    try:
        wanted_size = parse_size(size)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="model_size_in_billions") from None
    for spec in family.model_specs:
        if model_format is not None and spec.model_format != model_format.lower():
            continue
        if wanted_size is not None and abs(spec.model_size_in_billions - wanted_size) > 1e-9:
            continue
        if quantization is None:
            return spec, spec.quantizations[0]
        for candidate in spec.quantizations:
            if candidate.lower() == quantization.lower():
                return spec, candidate
    asked = ", ".join(
        f"{k}={v}"
        for k, v in (("format", model_format), ("size", size), ("quantization", quantization))
        if v is not None
    )
    raise LaunchError(
        f"{family.model_name} has no spec with {asked}; it has {summarize_specs(family.model_specs)}"
    )


def describe_spec(spec: ModelSpec) -> str:
    """'ggufv2 0.135B [Q4_1]'."""
    return f"{spec.model_format} {spec.model_size_in_billions:g}B [{', '.join(spec.quantizations)}]"


def summarize_specs(specs: Iterable[ModelSpec]) -> str:
    """Per format, its sizes and quantizations: 'awq 4B, 8B [Int4]; ggufv2 0.6B [Q4_K_M, Q8_0]'."""
    sizes: dict[str, dict[float, None]] = {}
    quants: dict[str, dict[str, None]] = {}
    for spec in specs:
        sizes.setdefault(spec.model_format, {})[spec.model_size_in_billions] = None
        quants.setdefault(spec.model_format, {}).update(dict.fromkeys(spec.quantizations))
    return "; ".join(
        f"{fmt} {', '.join(f'{size:g}B' for size in sorted(sizes[fmt]))} [{', '.join(quants[fmt])}]"
        for fmt in sizes
    )


def check_local_sources(family: Family) -> None:
    """A local source must point at something that exists now, and by an absolute path (a relative
    one would depend on the directory the server happens to run in)."""
    for spec in family.model_specs:
        for source in spec.sources:
            if source.hub != "local":
                continue
            path = Path(source.model_id).expanduser()
            if not path.is_absolute():
                raise InvalidRequest(
                    f"local path {source.model_id!r} of {family.model_name!r} is relative; give an absolute path"
                )
            if not path.exists():
                raise InvalidRequest(
                    f"local path {str(path)!r} of {family.model_name!r} does not exist"
                )
            if source.file_name_template is None:
                continue
            for quantization in spec.quantizations:
                file = path / source.file_name_template.format(quantization=quantization)
                if not file.exists():
                    raise InvalidRequest(
                        f"local file {str(file)!r} of {family.model_name!r} ({spec.model_format}, "
                        f"quantization {quantization}) does not exist"
                    )


def close_matches(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """Names like ``name`` (difflib, case-insensitive), then names containing it."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    query = name.lower()
    found = difflib.get_close_matches(query, list(by_lower), n=n, cutoff=0.6)
    found += [c for c in by_lower if query and query in c and c not in found]
    return [by_lower[c] for c in found[:n]]
