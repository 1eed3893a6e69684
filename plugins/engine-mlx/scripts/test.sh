#!/usr/bin/env bash
# The MLX plugin's CI step: set up .venv-mlx (reused when present; installs Debian's OpenBLAS when
# missing), prepare SmolLM2 (the float32 folder with the main .venv's torch, then its 4-bit
# mlx_lm.convert copy with .venv-mlx; cached in .models/), run the plugin's tests there; then build
# MLX's managed environment with `modelyard env install MLX` and run the end-to-end tests through a
# `modelyard serve` started from the main .venv (one OpenBLAS thread).
#   bash plugins/engine-mlx/scripts/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
start=$SECONDS

bash plugins/engine-mlx/scripts/setup-env.sh
PY="$ROOT/.venv-mlx/bin/python"

echo "== preparing the test models (cached in ${MODELYARD_TEST_MODELS:-.models}/)"
[ -x .venv/bin/python ] || (source scripts/_env.sh && sync_groups test)
.venv/bin/python scripts/prepare_models.py smollm2
"$PY" scripts/prepare_models.py smollm2-mlx

echo "== MLX plugin tests"
export MODELYARD_MLX_THREADS=1 OPENBLAS_NUM_THREADS=1
status=0
"$PY" -m pytest -p no:cacheprovider plugins/engine-mlx/tests "$@" || status=$?

echo "== MLX in an environment of its own: modelyard env install MLX, then serve from the main .venv"
# As for vLLM: the managed environment lives in a home kept between runs (.modelyard-ci).
export MODELYARD_HOME="$ROOT/.modelyard-ci"
PATH="$HOME/.local/bin:$PATH" .venv/bin/modelyard env install MLX || status=$?
MODELYARD_TEST_MLX_PYTHON="$MODELYARD_HOME/envs/mlx/bin/python" \
    .venv/bin/python -m pytest -p no:cacheprovider tests/test_e2e_mlx.py "$@" || status=$?
echo "== MLX step took $((SECONDS - start)) s"
exit $status
