"""Model roots: the only folders a caller may point the server at for local weights.

A launch's ``model_path`` and a registration's ``model_uri`` (plain or ``file://``) name files on the
server's disk, so an unchecked one lets any caller probe or read the server's files. Each is resolved
the way the engine would open it (``~``, ``..`` and symlinks followed) and must then lie inside a
root. The refusal is the same 403 whether the path exists or not, and comes before anything opens
it. Weights that modelyard finds itself (a catalog ``package`` source, the hub caches) are trusted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import Forbidden
from .home import home_dir


def huggingface_cache() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or Path(
        os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "huggingface"
    )
    return Path(hf_home) / "hub"


def modelscope_cache() -> Path:
    if os.environ.get("MODELSCOPE_CACHE"):
        return Path(os.environ["MODELSCOPE_CACHE"])
    return Path.home() / ".cache" / "modelscope"


def default_model_roots() -> tuple[Path, ...]:
    """``<MODELYARD_HOME>/models`` and the Hugging Face and ModelScope caches."""
    roots = (home_dir() / "models", huggingface_cache(), modelscope_cache())
    return tuple(Path(os.path.realpath(r.expanduser())) for r in roots)


def local_path(raw: str) -> str | None:
    """A ``file://`` URI or a plain path as a path; None for a URI of another host or scheme."""
    if raw.startswith("file:"):
        parsed = urlparse(raw)
        if parsed.netloc not in ("", "localhost"):
            return None
        return unquote(parsed.path)
    return raw


def check_local_path(raw: object, roots: Sequence[Path], *, param: str) -> Path:
    """``raw`` resolved (symlinks followed) when it lies inside one of ``roots``; else Forbidden.

    Nothing here tells an existing path from a missing one: ``realpath`` normalises a missing
    path the same way, and the refusal message only repeats what the caller sent."""
    text = local_path(raw) if isinstance(raw, str) else None
    resolved: Path | None = None
    if text and "\x00" not in text and os.path.isabs(os.path.expanduser(text)):
        resolved = Path(os.path.realpath(os.path.expanduser(text)))
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            resolved = None
    if resolved is None:
        where = ", ".join(str(r) for r in roots) or "none configured"
        raise Forbidden(
            f"{param} {raw!r} is not inside an allowed model root ({where}); put the weights "
            "there, or start the server with --model-root DIR (an absolute path) to allow a folder",
            param=param,
            code="path_not_allowed",
        )
    return resolved
