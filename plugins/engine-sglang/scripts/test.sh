#!/usr/bin/env bash
# The SGLang plugin's CI step: set up .venv-sglang (reused when present) and run the plugin's tests
# there; build SGLang's managed environment with `modelyard env install SGLang` (the same pins and
# CPU recipe); then serve SmolLM2 on SGLang from a `modelyard serve` started from the main .venv, its
# runner in that environment, driven by the openai client (tests/test_e2e_sglang.py: one engine start).
#   bash plugins/engine-sglang/scripts/test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
start=$SECONDS

bash plugins/engine-sglang/scripts/setup-env.sh
PY="$ROOT/.venv-sglang/bin/python"

echo "== preparing the test models (cached in ${MODELYARD_TEST_MODELS:-.models}/)"
"$PY" scripts/prepare_models.py smollm2 minilm

echo "== SGLang plugin tests (in .venv-sglang)"
status=0
"$PY" -m pytest -p no:cacheprovider plugins/engine-sglang/tests "$@" || status=$?

echo "== SGLang in an environment of its own: modelyard env install SGLang, then modelyard serve"
# The main environment (scripts/test builds it) runs the server; the managed environment lives in
# a home kept between runs (.modelyard-ci), so a second run finds it built and only checks its pins.
[ -x .venv/bin/modelyard ] || (source scripts/_env.sh && sync_groups test)
export MODELYARD_HOME="$ROOT/.modelyard-ci"
[ -d /opt/wheels ] && export UV_FIND_LINKS=/opt/wheels  # the CPU torch wheel these pins name
PATH="$HOME/.local/bin:$PATH" .venv/bin/modelyard env install SGLang || status=$?
MODELYARD_TEST_SGLANG_PYTHON="$MODELYARD_HOME/envs/sglang/bin/python" \
    .venv/bin/python -m pytest -p no:cacheprovider tests/test_e2e_sglang.py "$@" || status=$?
echo "== SGLang step took $((SECONDS - start)) s"
exit $status
