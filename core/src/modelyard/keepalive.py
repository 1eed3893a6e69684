"""``keep_alive`` as Ollama means it: how long a model stays loaded after its last request.

A duration string ("5m", "30s", "1h30m", "250ms"), a number of seconds (30, "30", 2.5), 0 (unload
as soon as the request is answered) or any negative number ("-1": never unload). Parsed into
seconds, with ``None`` standing for "never".
"""

from __future__ import annotations

import math
import re

from .errors import InvalidRequest

EXAMPLES = '"5m", "30s", "1h30m", 300 (seconds), 0 (unload right after the request), -1 (never)'
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h))+")

NEVER = None  # a parsed keep_alive of None: the model is never unloaded for being idle


def parse_keep_alive(value: object, *, param: str = "keep_alive") -> float | None:
    """Seconds to keep a model loaded (``None``: forever); ``InvalidRequest`` with examples when
    ``value`` is not a duration."""
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower()
        try:
            seconds = float(text)
        except ValueError:
            negative = text.startswith("-")
            body = text.removeprefix("-")
            if _DURATION.fullmatch(body):
                total = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(body))
                seconds = -total if negative else total
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        raise InvalidRequest(
            f"{param} must be a duration, got {value!r}; for example {EXAMPLES}",
            param=param,
            code="invalid_keep_alive",
        )
    return NEVER if seconds < 0 else seconds


def describe_keep_alive(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:g} s"
