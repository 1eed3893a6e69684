#!/usr/bin/env bash
# The MLX plugin's CI step: set up .venv-mlx (reused when present; installs Debian's OpenBLAS when
# missing), prepare SmolLM2 (the float32 folder with the main .venv's torch, then its 4-bit
# mlx_lm.convert copy with .venv-mlx; cached in .models/), run the plugin's tests and the end-to-end
# tests through `modelyard serve` with one OpenBLAS thread.
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
"$PY" -m pytest -p no:cacheprovider plugins/engine-mlx/tests tests/test_e2e_mlx.py "$@" || status=$?
echo "== MLX step took $((SECONDS - start)) s"
exit $status
