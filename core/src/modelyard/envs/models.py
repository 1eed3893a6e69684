"""Per-model environments (Xinference's ``virtualenv``): a family's extra packages, layered on its
engine's environment, built once and reused by every launch that asks for the same thing.

The layer is a venv of the same base Python whose ``site-packages`` holds only the extra packages
(and what they pull in); a ``.pth`` file adds the engine environment's ``site-packages`` after them,
so the model sees its own versions first and everything else from its engine. Layers live in
``<MODELYARD_HOME>/envs/models/<key>``, the key a hash of the engine interpreter and the packages;
a layer is built in a hidden folder and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import LaunchError
from .install import find_uv, log_tail, run_logged
from .probing import probe
from .store import EnvStore

READY = ".modelyard-ready"


def layer_path(store: EnvStore, base_python: str, packages: tuple[str, ...]) -> Path:
    key = json.dumps({"base": base_python, "packages": sorted(packages)})
    return store.root / "models" / hashlib.sha256(key.encode()).hexdigest()[:16]


def model_interpreter(
    store: EnvStore,
    base_python: str,
    packages: tuple[str, ...],
    say: Callable[[str], None] = lambda message: None,
) -> str:
    """The interpreter of the layer with ``packages`` on ``base_python``'s environment (built now
    if it does not exist yet). Blocking: call it from a worker thread."""
    final = layer_path(store, base_python, packages)
    python = final / "bin" / "python"
    if (final / READY).is_file():
        return str(python)
    final.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.building-"))
    log_path = final.parent / f"{final.name}.install.log"
    say(f"building a model environment with {', '.join(packages)} (log: {log_path})")
    uv = find_uv()
    try:
        with log_path.open("w") as log:
            new_python = building / "bin" / "python"
            steps = [
                [*uv, "venv", "--relocatable", "--python", base_python, str(building)],
                [
                    *uv,
                    "pip",
                    "install",
                    "--compile-bytecode",
                    "--python",
                    str(new_python),
                    *packages,
                ],
            ]
            for argv in steps:
                run_logged(log, argv)
        sites = probe(str(new_python)).site
        # addsitedir, not a plain path line: the engine environment's own .pth files (editable
        # installs among them) must be read too.
        base_sites = probe(base_python).site
        (Path(sites[0]) / "_modelyard_engine_env.pth").write_text(
            f"import site; list(map(site.addsitedir, {base_sites!r}))\n"
        )
        layered = probe(str(new_python))
        if layered.missing is not None:  # the layer must still see modelyard and the engine
            raise LaunchError(f"the model environment in {building} is broken: {layered.missing}")
        (building / READY).write_text(json.dumps({"base": base_python, "packages": packages}))
        if (final / READY).is_file():  # another launch built the same layer meanwhile
            shutil.rmtree(building, ignore_errors=True)
        else:
            os.replace(building, final)
    except subprocess.CalledProcessError:
        shutil.rmtree(building, ignore_errors=True)
        raise LaunchError(
            f"installing the model's packages ({', '.join(packages)}) failed: {log_tail(log_path, 6)} "
            f"(whole log: {log_path})"
        ) from None
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return str(python)
