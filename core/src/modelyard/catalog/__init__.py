"""The model catalog: built-in families (JSON data shipped in this package), families contributed
by plugins through ``register_families``, and custom registrations under ``MODELYARD_HOME``.

``get_catalog()`` is the process-wide catalog; ``Catalog`` and ``load_families`` are for tools and
tests that want their own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import cache
from pathlib import Path

import msgspec

from ..errors import CatalogError
from ..home import home_dir
from ..specs import EmbeddingFamily, Family, LLMFamily, RerankFamily
from .loader import decode_family, load_families, load_registration
from .store import (
    Catalog,
    check_local_sources,
    close_matches,
    describe_spec,
    select_spec,
    summarize_specs,
)
from .validation import check_family
from .xinference import family_from_registration, family_to_registration, parse_registration

DATA_DIR = Path(__file__).parent / "data"
BUILTIN_FILES = ("llm.json", "embedding.json", "rerank.json")

__all__ = [
    "BUILTIN_FILES",
    "DATA_DIR",
    "Catalog",
    "builtin_families",
    "check_family",
    "check_local_sources",
    "close_matches",
    "decode_family",
    "describe_spec",
    "family_from_registration",
    "family_to_registration",
    "get_catalog",
    "load_families",
    "load_registration",
    "parse_registration",
    "plugin_families",
    "select_spec",
    "summarize_specs",
]

_catalogs: dict[Path, Catalog] = {}
_catalogs_lock = threading.Lock()


@cache
def builtin_families() -> tuple[Family, ...]:
    """The families in the package's data files, validated (cached: they never change at run time)."""
    families: list[Family] = []
    for name in BUILTIN_FILES:
        families.extend(load_families(DATA_DIR / name))
    return tuple(families)


def plugin_families(taken: Iterable[Family] = ()) -> list[Family]:
    """Families that installed plugins contribute through the ``register_families`` hook.

    A name already in ``taken`` (the builtins) or given by two plugins is an error naming the plugin.
    """
    from ..plugins import get_plugin_manager  # late: loading plugins is not needed to read data

    owners = {family.model_name.lower(): "the built-in catalog" for family in taken}
    found: list[Family] = []
    for impl in get_plugin_manager().hook.register_families.get_hookimpls():

        def register(family: Family, _plugin: str = impl.plugin_name) -> None:
            where = f"family {getattr(family, 'model_name', family)!r} from plugin {_plugin!r}"
            if not isinstance(family, (LLMFamily, EmbeddingFamily, RerankFamily)):
                raise CatalogError(
                    f"{where}: expected an LLMFamily, EmbeddingFamily or RerankFamily"
                )
            key = family.model_name.lower()
            if key in owners:
                raise CatalogError(
                    f"{where}: the name is already defined by {owners[key]}; rename it"
                )
            owners[key] = f"plugin {_plugin!r}"
            found.append(decode_family(msgspec.to_builtins(family), where=where))

        impl.function(register=register)
    return found


def get_catalog(*, refresh: bool = False) -> Catalog:
    """The catalog for the current ``MODELYARD_HOME``: builtins, plugin families, registrations.

    Cached per registrations directory; ``refresh=True`` re-reads plugins and registration files.
    """
    directory = home_dir() / "registrations"
    with _catalogs_lock:
        catalog = _catalogs.get(directory)
        if catalog is None or refresh:
            builtins = builtin_families()
            families = [*builtins, *plugin_families(builtins)]
            catalog = Catalog(families, registrations_dir=directory)
            _catalogs[directory] = catalog
        return catalog
