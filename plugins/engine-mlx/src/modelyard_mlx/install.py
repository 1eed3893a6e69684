"""Which MLX is installed here, read from package metadata: importing mlx is never needed to match.

On macOS the ``mlx`` wheel carries the Metal backend; on Linux ``mlx[cpu]`` adds the ``mlx-cpu``
distribution (the CPU backend). mlx-lm is the language-model layer this engine serves through.
"""

from __future__ import annotations

from modelyard.engine_library import distribution_version
from msgspec import Struct

LINUX_HINT = (
    'run `modelyard env install MLX` (an environment of its own, pinned), or `pip install "mlx[cpu]" '
    "mlx-lm` on Linux"
)
MACOS_HINT = "run `modelyard env install MLX`, or `pip install mlx mlx-lm` on macOS"


class MlxInstall(Struct, frozen=True):
    """The MLX found in an environment; a version is None when that distribution is missing."""

    mlx: str | None = None
    mlx_lm: str | None = None
    mlx_cpu: str | None = None

    @property
    def installed(self) -> bool:
        return self.mlx is not None and self.mlx_lm is not None

    def missing(self, system: str) -> str | None:
        """What is missing to serve on ``system`` (with how to get it), or None."""
        hint = MACOS_HINT if system == "darwin" else LINUX_HINT
        if self.mlx is None:
            return f"mlx is not installed: {hint}"
        if self.mlx_lm is None:
            return f"mlx-lm is not installed beside mlx {self.mlx}: {hint}"
        if system == "linux" and self.mlx_cpu is None:
            return f"mlx {self.mlx} has no CPU backend here (mlx[cpu] adds it): {hint}"
        return None


def detect_install() -> MlxInstall:
    version = distribution_version
    return MlxInstall(mlx=version("mlx"), mlx_lm=version("mlx-lm"), mlx_cpu=version("mlx-cpu"))
