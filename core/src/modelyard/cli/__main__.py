"""`python -m modelyard.cli` runs the `modelyard` command."""

from __future__ import annotations

from . import main

main()
