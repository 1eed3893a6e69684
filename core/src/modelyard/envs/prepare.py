"""``python -m modelyard.envs.prepare ENGINE VARIANT``: run in an engine's newly built environment
by ``modelyard env install``, it calls the engine's plugin's ``prepare_environment`` there."""

from __future__ import annotations

import sys

from ..plugins import get_plugin_manager


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m modelyard.envs.prepare ENGINE VARIANT", file=sys.stderr)
        return 2
    engine, variant = argv
    pm = get_plugin_manager()
    if pm.engine(engine) is None:
        print(f"no plugin in {sys.prefix} registers the engine {engine!r}", file=sys.stderr)
        return 1
    pm.call_owner("prepare_environment", engine, variant=variant)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
