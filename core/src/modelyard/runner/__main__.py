"""``python -m modelyard.runner --socket PATH``: the process that hosts one loaded model.

Started by the server's ModelManager with an argv list (no shell). What to load arrives as the first
frame on the socket, never on the command line.
"""

from __future__ import annotations

import argparse
import logging
import sys

import anyio

from .host import run_runner


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelyard.runner")
    parser.add_argument("--socket", required=True, help="Unix socket the server listens on")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        # The server logs each line with its own timestamp, prefixed with the model uid.
        format="%(levelname)s %(name)s: %(message)s",
    )
    return anyio.run(run_runner, args.socket)


if __name__ == "__main__":
    sys.exit(main())
