"""`modelyard env install`: build an engine's own environment with uv, from the pins its plugin ships.

Built in a hidden folder beside the final one and moved into place only once the engine answers a
probe there, so a failed or interrupted install never leaves a half-built environment marked ready
and the previous one keeps working. The installer's output goes to ``<engine>.install.log``; its
last lines are in the error. uv reads its usual settings from the environment (``UV_FIND_LINKS``,
``UV_INDEX_URL``...), so a local wheel folder or a package mirror works as it does for uv itself.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ..errors import InvalidRequest, LaunchError
from ..plugins import PluginManager
from . import Environment, check_engine, ready
from .probing import probe
from .store import EnvConfig, EnvStore

PINS_MARK = ".modelyard-pins.sha256"  # in a managed environment: the pins it was built from


def install_env(
    pm: PluginManager,
    store: EnvStore,
    engine: str,
    variant: str,
    *,
    say: Callable[[str], None] = print,
) -> Environment:
    info = pm.engine(engine)
    if info is None:
        known = ", ".join(sorted(pm.engines())) or "none"
        raise InvalidRequest(
            f"no installed plugin registers an engine {engine!r} (engines here: {known})"
        )
    pins = pm.call_owner("engine_environment", info.name, variant=variant)
    if pins is None:
        raise InvalidRequest(
            f"the {info.name} plugin ships no pinned {variant} environment; build one yourself and "
            f"point the engine at it with `modelyard env use {info.name} PYTHON`"
        )
    requirements = [line for line in Path(pins).read_text().splitlines() if not _own(line)]
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    final = store.managed_path(info.name)
    config = store.get(info.name)
    if (
        config is not None
        and config.managed
        and (final / PINS_MARK).is_file()
        and (final / PINS_MARK).read_text() == digest
    ):
        say(f"{info.name}: the environment in {final} already holds these pins")
        return ready(
            check_engine(info.name, config.python, probe(config.python)),
            config.python,
            managed=True,
        )

    store.root.mkdir(parents=True, exist_ok=True)
    log_path = store.root / f"{final.name}.install.log"
    building = Path(tempfile.mkdtemp(dir=store.root, prefix=f".{final.name}.building-"))
    uv = find_uv()
    try:
        with log_path.open("w") as log:
            python = building / "bin" / "python"
            say(f"{info.name}: creating a {variant} environment (installer log: {log_path})")
            run_logged(
                log, [*uv, "venv", "--relocatable", "--python", sys.executable, str(building)]
            )
            pinned = building / "requirements.txt"
            pinned.write_text("\n".join(requirements) + "\n")
            say(f"{info.name}: installing {len(_names(requirements))} pinned packages")
            # sync, not install: the pins are complete (a lock), and what they leave out on
            # purpose (vLLM's CUDA-linked torchvision) must stay out.
            sync = [*uv, "pip", "sync", "--compile-bytecode", "--python", str(python)]
            run_logged(log, [*sync, str(pinned)])
            own = [_source("modelyard"), _source_of(pm.distribution_of(info.name))]
            say(f"{info.name}: adding modelyard and its plugin")
            run_logged(log, [*uv, "pip", "install", "--python", str(python), "--no-deps", *own])
            say(f"{info.name}: preparing the environment (its plugin's prepare_environment)")
            run_logged(log, [str(python), "-m", "modelyard.envs.prepare", info.name, variant])
            (building / PINS_MARK).write_text(digest)
            check_engine(info.name, str(python), probe(str(python)))  # the engine answers there
        _swap(building, final)
    except BaseException as exc:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, InvalidRequest | LaunchError):
            raise
        if isinstance(exc, subprocess.CalledProcessError):
            raise LaunchError(
                f"`modelyard env install {info.name}` failed: {log_tail(log_path)} (whole log: {log_path}); "
                "the previous environment, if any, is unchanged"
            ) from None
        raise
    installed = str(final / "bin" / "python")
    store.set(EnvConfig(engine=info.name, python=installed, managed=True, variant=variant))
    return ready(check_engine(info.name, installed, probe(installed)), installed, managed=True)


def _own(line: str) -> bool:
    """modelyard's own packages (editable lines of the pins), installed from their sources instead."""
    return line.strip().startswith(("-e ", "--editable"))


def _names(requirements: list[str]) -> list[str]:
    return [r for r in requirements if r.strip() and not r.lstrip().startswith(("#", "-"))]


def _source(distribution: str) -> str:
    return _source_of(importlib.metadata.distribution(distribution))


def _source_of(dist: importlib.metadata.Distribution | None) -> str:
    """Where a distribution of ours came from: its local folder (PEP 610), else name==version."""
    if dist is None:
        raise InvalidRequest("the engine's plugin has no installed distribution to copy")
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    url = direct.get("url", "")
    if url.startswith("file://"):
        editable = direct.get("dir_info", {}).get("editable", False)
        return f"-e{url.removeprefix('file://')}" if editable else url.removeprefix("file://")
    return f"{dist.metadata['Name']}=={dist.version}"


def find_uv() -> list[str]:
    found = shutil.which("uv")
    if found:
        return [found]
    probe_uv = subprocess.run(
        [sys.executable, "-m", "uv", "--version"], capture_output=True, check=False
    )
    if probe_uv.returncode == 0:
        return [sys.executable, "-m", "uv"]
    raise InvalidRequest(
        "`modelyard env install` builds environments with uv: `pip install uv` first"
    )


def run_logged(log: TextIO, argv: list[str]) -> None:
    """Run one installer step with its command line and output appended to the install log."""
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, check=True)


def log_tail(path: Path, lines: int = 8) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _swap(building: Path, final: Path) -> None:
    """Put the new environment in place; the old one goes only after the new one is there."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(building, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
