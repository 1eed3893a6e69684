#!/usr/bin/env bash
# Build (or bring up to date) .venv-mlx: mlx's CPU build and mlx-lm, modelyard, this plugin and its
# test tools, exactly as requirements-cpu.txt pins them (scripts/upgrade moves the pins). On Linux it
# also installs Debian's OpenBLAS when missing: the mlx[cpu] wheel bundles the reference BLAS, and
# the runner preloads OpenBLAS when it is there (~50x faster matrix products).
#   bash plugins/engine-mlx/scripts/setup-env.sh
set -euo pipefail
MODELYARD_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/.venv-mlx"
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/_env.sh"

echo "== .venv-mlx from plugins/engine-mlx/src/modelyard_mlx/pins/requirements-cpu.txt"
sync_engine_env plugins/engine-mlx/src/modelyard_mlx/pins

if [ "$(uname -s)" = Linux ] && command -v apt-get >/dev/null &&
    ! ls /usr/lib/*/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        echo "== installing Debian's OpenBLAS (libopenblas0-pthread) for MLX's CPU build"
        apt-get install -y --no-install-recommends libopenblas0-pthread >/dev/null ||
            { apt-get update >/dev/null && apt-get install -y --no-install-recommends libopenblas0-pthread >/dev/null; }
    else
        echo "note: MLX on CPU runs ~50x faster with OpenBLAS: apt-get install libopenblas0-pthread" >&2
    fi
fi
