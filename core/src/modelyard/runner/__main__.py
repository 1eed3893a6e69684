"""``python -m modelyard.runner --socket PATH``: the process that hosts one loaded model.

Started by the server's ModelManager with an argv list (no shell). What to load arrives as the first
frame on the socket, never on the command line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

import anyio

from .host import run_runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.runner")
    parser.add_argument("--socket", required=True, help="Unix socket the server listens on")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--preload", metavar="ENGINE", help="import this engine's modules before connecting"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        # The server logs each line with its own timestamp, prefixed with the model uid.
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.preload:
        preload(args.preload)
    return anyio.run(run_runner, args.socket, backend_options=loop_options())


def preload(engine: str) -> None:
    """Import the modules the engine's plugin declares (``EngineInfo.preload``): a warm runner
    pays for them while it waits, not while a launch waits. A module that fails to import is
    only logged: the launch that follows reports the real error."""
    from ..plugins import get_plugin_manager

    info = get_plugin_manager().engine(engine)
    for module in info.preload if info is not None else ():
        try:
            importlib.import_module(module)
        except Exception as exc:
            logging.getLogger("modelyard.runner").warning("preloading %s failed: %s", module, exc)


def loop_options() -> dict[str, bool]:
    """uvloop where the runner's environment has it: its wakeups from engine threads cost less."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


if __name__ == "__main__":
    sys.exit(main())
