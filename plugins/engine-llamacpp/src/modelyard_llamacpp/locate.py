"""Finding a spec's GGUF on this machine without downloading anything (for estimates)."""

from __future__ import annotations

from pathlib import Path

from modelyard.errors import ModelyardError
from modelyard.specs import ModelSpec


def find_gguf(spec: ModelSpec, quantization: str) -> Path | None:
    """The local GGUF of ``spec`` at ``quantization``: a package or local source, or a file already
    in the Hugging Face cache; None when it would have to be downloaded first."""
    from modelyard import hub

    for source in spec.sources:
        if source.hub in ("package", "local"):
            try:
                path = hub.resolve(spec, quantization, hub=source.hub)
            except ModelyardError:
                continue
            if path.is_file():
                return path
        elif source.hub == "huggingface":
            cached = _hf_cached(
                source.model_id, hub.file_name(source, quantization), source.revision
            )
            if cached is not None:
                return cached
    return None


def _hf_cached(repo_id: str, filename: str | None, revision: str | None) -> Path | None:
    if filename is None:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None
