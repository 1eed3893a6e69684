"""Debian's OpenBLAS for mlx[cpu], loaded into the runner before mlx.

The mlx-cpu wheel links the reference BLAS (~3 GFLOP/s here); loading OpenBLAS first with
RTLD_GLOBAL makes mlx's BLAS symbols resolve to it (~90 GFLOP/s on one core, the same as
LD_PRELOAD), so only the runner that serves MLX is affected. ``setup-env.sh`` installs
``libopenblas0-pthread`` when it can.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import sys

log = logging.getLogger(__name__)
PATTERNS = (
    "/usr/lib/*/openblas-pthread/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/lib64/libopenblas.so.0",
)


def find_openblas() -> str | None:
    for pattern in PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def preload(threads: int) -> str | None:
    """Load OpenBLAS with ``threads`` threads ahead of mlx; the library's path, or None when there
    is none (or mlx is already imported, when it is too late)."""
    if not sys.platform.startswith("linux") or "mlx.core" in sys.modules:
        return None
    path = find_openblas()
    if path is None:
        log.warning(
            "OpenBLAS not found: mlx[cpu] runs on its reference BLAS, ~30x slower "
            "(apt-get install libopenblas0-pthread)"
        )
        return None
    library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    library.openblas_set_num_threads(threads)
    return path
