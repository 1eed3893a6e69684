# Shared by the setup scripts: uv at a pinned version, and environments installed from the lock.
# The main environment is .venv at the repository root (MODELYARD_VENV names another); engines whose
# libraries cannot share it (vLLM) keep their own, pinned by a compiled requirements file.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

UV_VERSION="0.13.9"
export PATH="$HOME/.local/bin:$PATH"
if [ "$(uv --version 2>/dev/null | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    echo "== installing uv $UV_VERSION (the package installer these scripts use)"
    python3 -m pip install --quiet --user "uv==$UV_VERSION"
fi

export UV_PROJECT_ENVIRONMENT="${MODELYARD_VENV:-$ROOT/.venv}"
export VIRTUAL_ENV="$UV_PROJECT_ENVIRONMENT"
export PATH="$VIRTUAL_ENV/bin:$PATH"
# Compile bytecode at install: these machines set PYTHONDONTWRITEBYTECODE, so an uncompiled
# environment recompiles torch and transformers on every process start.
export UV_COMPILE_BYTECODE=1

stale_pins() {
    echo "error: $1 no longer matches $2." >&2
    echo "Run \`bash scripts/upgrade --no-upgrade\` to pin what the change needs, or" >&2
    echo "\`bash scripts/upgrade\` to move every pin; both run the tests, then commit the pins." >&2
    exit 1
}

# sync_groups GROUP...: the main environment, exactly as uv.lock pins it for these groups.
sync_groups() {
    uv lock --check --quiet 2>/dev/null || stale_pins uv.lock "the pyproject.toml files"
    local args=()
    for group in "$@"; do args+=(--group "$group"); done
    uv sync --quiet --locked --no-default-groups "${args[@]}"
}

# An engine environment is pinned per variant (cpu, cuda) by PINS/requirements-VARIANT.txt (PINS: the
# plugin package's pins/ folder, shipped with it for `modelyard env install --variant VARIANT`),
# compiled from PINS/requirements-VARIANT.in and, when present, PINS/overrides-VARIANT.txt for Linux
# x86-64 on CPython 3.11 (glibc 2.28, or the platform tag in PINS/python-platform: mlx's Linux
# wheels need glibc 2.35, SGLang's 2.34). The cpu variant takes torch's CPU build from /opt/wheels; the cuda variant
# takes PyPI's (CUDA) wheels. ENGINE_PINS lists every plugin's pins folder.
ENGINE_PINS=(plugins/engine-vllm/src/modelyard_vllm/pins plugins/engine-mlx/src/modelyard_mlx/pins
    plugins/engine-sglang/src/modelyard_sglang/pins)
engine_pin_variants() { # PINS: the variants it pins
    local input
    for input in "$1"/requirements-*.in; do
        input="${input##*/requirements-}"
        echo "${input%.in}"
    done
}
compile_engine_pins() { # PINS VARIANT OUTPUT [uv pip compile args]
    local pins="$1" variant="$2" output="$3" extra=() platform=x86_64-manylinux_2_28
    shift 3
    [ -f "$pins/python-platform" ] && platform="$(cat "$pins/python-platform")"
    [ "$variant" = cpu ] && extra+=(--find-links /opt/wheels)
    [ -f "$pins/overrides-$variant.txt" ] && extra+=(--override "$pins/overrides-$variant.txt")
    uv pip compile --quiet --python-version 3.11 --python-platform "$platform" \
        "${extra[@]}" --custom-compile-command "bash scripts/upgrade" \
        "$pins/requirements-$variant.in" -o "$output" "$@"
}

# check_engine_pins PINS: a pin file that no longer matches its .in fails at once.
check_engine_pins() {
    local pins="$1" check variant
    check="$(mktemp)"
    for variant in $(engine_pin_variants "$pins"); do
        cp "$pins/requirements-$variant.txt" "$check"
        compile_engine_pins "$pins" "$variant" "$check" 2>/dev/null || true
        cmp -s "$check" "$pins/requirements-$variant.txt" || {
            rm -f "$check"
            stale_pins "$pins/requirements-$variant.txt" "$pins/requirements-$variant.in"
        }
    done
    rm -f "$check"
}

# sync_engine_env PINS: VIRTUAL_ENV holds exactly those pins.
sync_engine_env() {
    check_engine_pins "$1"
    [ -x "$VIRTUAL_ENV/bin/python" ] || uv venv --quiet --python 3.11 "$VIRTUAL_ENV"
    uv pip sync --quiet --find-links /opt/wheels "$1/requirements-cpu.txt"
}

# ensure_chromium: the browser the web UI's tests drive (Playwright with Debian's Chromium; never
# `playwright install`, which downloads its own). Installed with apt when missing, as root or
# through sudo; elsewhere the UI tests skip and say why.
CHROMIUM="${MODELYARD_CHROMIUM:-/usr/bin/chromium}"
ensure_chromium() {
    [ -x "$CHROMIUM" ] && return 0
    local sudo=()
    [ "$(id -u)" = 0 ] || sudo=(sudo -n)
    if command -v apt-get >/dev/null; then
        echo "== installing chromium (apt) for the web UI's browser tests"
        "${sudo[@]}" apt-get update -qq && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
            echo "warning: could not install chromium; the web UI's browser tests will skip" >&2
    else
        echo "warning: no apt-get here; install chromium (or set MODELYARD_CHROMIUM) for the web UI's browser tests" >&2
    fi
}
