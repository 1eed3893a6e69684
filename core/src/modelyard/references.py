"""Launching a model by reference instead of by catalog name.

``hf:ORG/REPO[:FILE.gguf]`` (Hugging Face), ``ms:ORG/REPO[:FILE]`` (ModelScope) or a local file or
folder. ``as_reference`` turns such a ``model_name`` into a launch with a plain model name (from the
repository or the path), ``source`` set and, for a local path, ``model_path`` (which the server then
holds to the allowed model roots). ``prepare_reference`` fetches the weights when they are remote
and reads the family from them (``introspect``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .errors import InvalidRequest
from .introspect import describe_weights
from .roots import local_path
from .specs import Family, Hub, LaunchRequest, ModelSource

if TYPE_CHECKING:
    from .runner.records import ModelRecord

PREFIXES: dict[str, Hub] = {"hf": "huggingface", "ms": "modelscope"}
FORMS = (
    "hf:ORG/REPO (Hugging Face), hf:ORG/REPO:FILE.gguf (one GGUF file of it), ms:ORG/REPO "
    "(ModelScope), or an absolute local path to a .gguf file or a model folder"
)
_PREFIX = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")
_FILE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")
_PATH_STARTS = ("/", "~", "./", "../", "file:")


@dataclass(frozen=True)
class Reference:
    hub: Hub  # "local" for a path
    model_id: str  # ORG/REPO, or the path as given
    file: str | None = None

    @property
    def name(self) -> str:
        """A model name (URL-safe, as catalog names are) for what this reference points at."""
        if self.hub == "local":
            stem = Path(self.model_id.rstrip("/")).name
            stem = stem[: -len(".gguf")] if stem.lower().endswith(".gguf") else stem
        else:
            stem = self.model_id.split("/")[-1]
            if self.file:
                stem = Path(self.file).name.removesuffix(".gguf")
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")
        return (cleaned or "model")[:128]


def parse_reference(text: str) -> Reference | None:
    """The reference ``text`` makes, or None for a plain (catalog) model name. A prefix that is
    not a known hub is an ``InvalidRequest`` listing the known ones."""
    if text.startswith(_PATH_STARTS):
        return Reference("local", text)
    found = _PREFIX.match(text)
    if found is None:
        return None
    prefix, rest = found.group(1), found.group(2)
    hub = PREFIXES.get(prefix.lower())
    if hub is None:
        raise InvalidRequest(
            f"unknown model repository prefix {prefix + ':'!r} in {text!r}; use one of: {FORMS}",
            param="model_name",
            code="unknown_repository_prefix",
        )
    repo, _, file = rest.partition(":")
    if not _REPO.match(repo) or (file and (not _FILE.match(file) or ".." in file.split("/"))):
        raise InvalidRequest(
            f"{text!r} is not a repository reference; write it as {prefix}:ORG/REPO or "
            f"{prefix}:ORG/REPO:FILE (e.g. hf:HuggingFaceTB/SmolLM2-135M-Instruct)",
            param="model_name",
            code="invalid_repository_reference",
        )
    return Reference(hub, repo, file or None)


def is_remote(source: str | None) -> bool:
    """Whether a launch's ``source`` names weights on a hub (to be downloaded before planning)."""
    reference = parse_reference(source) if source else None
    return reference is not None and reference.hub != "local"


def as_reference(launch: LaunchRequest) -> LaunchRequest:
    """``launch`` with a reference ``model_name`` (or ``source``) made explicit; else unchanged."""
    text = launch.source or launch.model_name
    reference = parse_reference(text)
    if reference is None:
        return launch
    changes: dict[str, Any] = {"source": text}
    if launch.source is None or launch.model_name == text:
        changes["model_name"] = reference.name
    if reference.hub == "local":
        changes["model_path"] = local_path(reference.model_id) or reference.model_id
    return msgspec.structs.replace(launch, **changes)


@dataclass(frozen=True)
class ReferenceLaunch:
    """A reference made launchable: the request with its weights local, and the family read."""

    request: LaunchRequest
    family: Family


async def prepare_reference(request: LaunchRequest, record: ModelRecord) -> ReferenceLaunch:
    """Fetch the weights of ``request.source`` (reporting progress on ``record``) unless local,
    and read the family from them."""
    assert request.source is not None
    reference = parse_reference(request.source)
    if reference is None:
        raise InvalidRequest(f"source {request.source!r} is not a reference; use {FORMS}")
    if reference.hub == "local":
        if request.model_path is None:
            raise InvalidRequest(
                "a local model reference needs its path checked against the model roots; "
                "send it as model_name",
                param="source",
            )
        path = Path(request.model_path)
        source = ModelSource(hub="local", model_id=str(path))
    else:
        source = ModelSource(hub=reference.hub, model_id=reference.model_id,
                             file_name_template=reference.file)  # fmt: skip
        record.state, record.progress = "downloading", 0.0

        def progress(value: float) -> None:
            record.progress = value

        from .hub import fetch

        path = await anyio.to_thread.run_sync(
            lambda: fetch(source, progress=progress), abandon_on_cancel=True
        )
    if not path.exists():
        raise InvalidRequest(f"model path {str(path)!r} does not exist", param="model_name")
    model_type = request.model_type if request.model_type != "LLM" else None
    family, _, _ = await anyio.to_thread.run_sync(
        lambda: describe_weights(
            path, name=request.model_name, source=source, model_type=model_type
        )
    )
    launched = msgspec.structs.replace(request, model_path=str(path), model_type=family.model_type)
    return ReferenceLaunch(request=launched, family=family)
