"""Loading a GGUF into an ``xllamacpp.Server``: checks first, then settings, GPU layers, the server."""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.errors import LaunchError
from modelyard.specs import Accelerator, AcceleratorKind, Family, LLMFamily

from . import estimate as memory
from .failures import Slots
from .gguf import read_gguf
from .model import LlamaCppModel
from .params import apply
from .settings import resolve

log = logging.getLogger(__name__)


def gpu_devices(devices: list[dict[str, Any]]) -> tuple[Accelerator, ...]:
    """The GPUs among ``xllamacpp.get_device_info()``'s devices, as modelyard accelerators."""
    found = []
    for index, device in enumerate(devices):
        kind = str(getattr(device.get("type"), "name", device.get("type", ""))).upper()
        if "GPU" not in kind:  # CPU and ACCEL (BLAS) devices hold no layers
            continue
        name = f"{device.get('name', '')} {device.get('description', '')}"
        family: AcceleratorKind = (
            "metal"
            if "metal" in name.lower() or "mtl" in name.lower()
            else "rocm"
            if "rocm" in name.lower() or "hip" in name.lower()
            else "cuda"
        )
        found.append(
            Accelerator(
                kind=family,
                index=index,
                name=name.strip(),
                memory_total=int(device.get("memory_total", 0)),
                memory_free=int(device.get("memory_free", 0)),
            )
        )
    return tuple(found)


def choose_gpu_layers(
    shape: memory.ModelShape, plan: memory.Plan, accelerators: tuple[Accelerator, ...]
) -> int:
    """Auto GPU layers: 0 without a GPU; the estimate's answer with one; all layers (-1) when the
    estimate itself fails, which is what llama.cpp would do by default."""
    if not accelerators:
        return 0
    try:
        return memory.gpu_layers(shape, plan, accelerators)
    except Exception as exc:  # a GGUF shape this estimate does not understand
        log.warning("GPU layer estimate failed (%s); offloading all layers", exc)
        return -1


def load(family: Family, params: Mapping[str, Any], path: Path) -> LlamaCppModel:
    gguf = read_gguf(path)  # refuse a non-GGUF or a truncated file before llama.cpp sees it
    shape = memory.ModelShape.from_gguf(gguf)
    settings = resolve(family, params, shape)

    import xllamacpp

    common = xllamacpp.CommonParams()
    apply(common, settings.assignments)
    common.model.path = str(path)
    socket_dir = lock_http(common)
    if not settings.gpu_layers_given:
        common.n_gpu_layers = choose_gpu_layers(
            shape, settings.plan, gpu_devices(xllamacpp.get_device_info())
        )
    try:
        server = xllamacpp.Server(common)
    except Exception as exc:
        shutil.rmtree(socket_dir, ignore_errors=True)
        raise LaunchError(
            f"llama.cpp could not load {path}: {exc}. Its log (above, on the runner's stderr) says why; "
            "common causes are an architecture this llama.cpp build does not know, or too little memory "
            "for n_ctx (lower n_ctx or n_parallel)"
        ) from exc
    if common.endpoint_metrics:
        # xllamacpp returns before llama.cpp's task loop has started; a Server destroyed in that
        # window never stops (its loop misses the stop flag) and the process hangs on exit. The
        # metrics task is answered by that loop, so once it answers the window is closed.
        server.handle_metrics()
    unlink_http(socket_dir)
    slots = Slots(
        n_ctx=settings.plan.n_ctx,
        n_parallel=settings.plan.n_parallel,
        slot_context=settings.context_length,
    )
    tool_parser = family.tool_parser if isinstance(family, LLMFamily) else None
    return LlamaCppModel(server, slots=slots, abilities=settings.abilities, tool_parser=tool_parser)


def lock_http(common: Any) -> Path:
    """Close the side door: xllamacpp always starts llama.cpp's own HTTP server (by default on a
    random 127.0.0.1 TCP port, no API key, CORS open to every origin). Bind it instead to a UNIX
    socket in a fresh 0700 folder (no TCP port at all), behind a random key nobody is told, with
    CORS closed and the slots and props endpoints off. modelyard calls the engine in-process,
    which none of this affects. Returns the folder, for ``unlink_http`` once the server listens."""
    folder = Path(tempfile.mkdtemp(prefix="modelyard-llama-"))  # mode 0700
    common.hostnames = [str(folder / "llama.sock")]
    common.api_keys = [secrets.token_urlsafe(32)]
    common.cors_origins = ""
    common.endpoint_slots = False
    common.endpoint_props = False
    # The readiness handshake (below) goes through the metrics task; over HTTP it needs the key.
    common.endpoint_metrics = True
    return folder


def unlink_http(folder: Path, timeout: float = 10.0) -> None:
    """Remove the socket's folder once llama.cpp listens on it: a listening UNIX socket without a
    path can accept nobody, so its HTTP server is then off in effect, and nothing is left on disk
    even if the runner is killed. Removed before llama.cpp binds, its bind would fail instead
    (it binds in its own thread), so wait for the socket to appear; if it never does, the folder
    stays and the key still locks it."""
    sock = folder / "llama.sock"
    deadline = time.monotonic() + timeout
    while not sock.exists():
        if time.monotonic() > deadline:
            log.warning("llama.cpp's HTTP socket did not appear in %s; leaving it locked", folder)
            return
        time.sleep(0.01)
    shutil.rmtree(folder, ignore_errors=True)
