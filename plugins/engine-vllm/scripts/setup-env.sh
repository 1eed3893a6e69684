#!/usr/bin/env bash
# Build (or bring up to date) .venv-vllm: vLLM's CPU build, modelyard, this plugin and its test tools,
# exactly as requirements-cpu.txt pins them (scripts/upgrade moves the pins). The first build takes a
# few minutes; later runs only check.
#   bash plugins/engine-vllm/scripts/setup-env.sh
set -euo pipefail
MODELYARD_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/.venv-vllm"
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/_env.sh"

echo "== .venv-vllm from plugins/engine-vllm/src/modelyard_vllm/pins/requirements-cpu.txt"
sync_engine_env plugins/engine-vllm/src/modelyard_vllm/pins
