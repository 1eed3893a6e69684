#!/usr/bin/env bash
# The vLLM plugin's CI step: set up .venv-vllm (reused when present), prepare the two small models
# (cached in .models/), run the plugin's tests, the slow and end-to-end ones included; then build
# vLLM's managed environment with `modelyard env install vLLM` and serve it beside llama.cpp from
# one `modelyard serve` started from the main .venv (tests/test_e2e_engine_envs.py).
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

echo "== vLLM in an environment of its own: modelyard env install vLLM, then one server for two engines"
# The main environment (scripts/test builds it) runs the server; the managed environment lives in
# a home kept between runs (.modelyard-ci), so a second run finds it built and only checks its pins.
[ -x .venv/bin/modelyard ] || (source scripts/_env.sh && sync_groups test)
export MODELYARD_HOME="$ROOT/.modelyard-ci"
[ -d /opt/wheels ] && export UV_FIND_LINKS=/opt/wheels  # the CPU torch wheel these pins name
PATH="$HOME/.local/bin:$PATH" .venv/bin/modelyard env install vLLM || status=$?
MODELYARD_TEST_VLLM_PYTHON="$MODELYARD_HOME/envs/vllm/bin/python" \
    .venv/bin/python -m pytest -p no:cacheprovider tests/test_e2e_engine_envs.py || status=$?
echo "== vLLM step took $((SECONDS - start)) s"
exit $status
