#!/usr/bin/env bash
# The vLLM plugin's CI step: set up .venv-vllm (reused when present), prepare the two small models
# (cached in .models/), and run the plugin's tests, the slow and end-to-end ones included.
#   bash plugins/engine-vllm/scripts/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
start=$SECONDS

bash plugins/engine-vllm/scripts/setup-env.sh
PY="$ROOT/.venv-vllm/bin/python"

echo "== preparing the test models (cached in ${MODELYARD_TEST_MODELS:-.models}/)"
"$PY" scripts/prepare_models.py smollm2 minilm

echo "== vLLM plugin tests"
# vLLM on a shared 2-core machine: its engine gets one bound core; one engine runs at a time.
status=0
"$PY" -m pytest plugins/engine-vllm/tests "$@" || status=$?
echo "== vLLM step took $((SECONDS - start)) s"
exit $status
