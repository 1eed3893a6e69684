#!/usr/bin/env bash
# Build (or bring up to date) .venv-sglang: SGLang on its CPU engine, modelyard, this plugin and its
# test tools, exactly as requirements-cpu.txt pins them (scripts/upgrade moves the pins), then the
# CPU recipe that pins cannot express (the same step `modelyard env install SGLang` runs). The first
# build takes 4-5 minutes and 3.5 GB; later runs only check.
#   bash plugins/engine-sglang/scripts/setup-env.sh
set -euo pipefail
MODELYARD_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/.venv-sglang"
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/_env.sh"

echo "== .venv-sglang from plugins/engine-sglang/src/modelyard_sglang/pins/requirements-cpu.txt"
sync_engine_env plugins/engine-sglang/src/modelyard_sglang/pins
echo "== the CPU recipe: sgl_kernel import shim, torchvision guard"
"$VIRTUAL_ENV/bin/python" -m modelyard.envs.prepare SGLang cpu
