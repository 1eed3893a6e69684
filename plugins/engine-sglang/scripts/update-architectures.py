"""Regenerate the plugin's shipped architecture list from the installed SGLang's ModelRegistry.

Run in an environment with SGLang:
`.venv-sglang/bin/python plugins/engine-sglang/scripts/update-architectures.py`.
The list is the fallback `match_engine` uses where SGLang is not installed.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "src" / "modelyard_sglang" / "architectures.txt"


def main() -> None:
    # The CPU environment has no CUDA kernels: SGLang's CPU engine imports its models without them.
    os.environ.setdefault("SGLANG_USE_CPU_ENGINE", "1")
    from sglang.srt.models.registry import ModelRegistry

    names = sorted(ModelRegistry.get_supported_archs())
    version = importlib.metadata.version("sglang")
    header = f"# SGLang {version}: ModelRegistry.get_supported_archs(), one per line.\n"
    header += "# Regenerate with plugins/engine-sglang/scripts/update-architectures.py.\n"
    TARGET.write_text(header + "\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} architectures to {TARGET}")


if __name__ == "__main__":
    main()
