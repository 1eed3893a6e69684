"""Log lines that a caller cannot forge or garble: control characters in logged values escaped.

A newline in a model name, a path or a URL would otherwise start a fake log line, and an escape
sequence would repaint the operator's terminal. ``EscapingFilter`` rewrites every record's
message once, before any handler formats it; ``safe`` escapes one value for a message built by hand.
"""

from __future__ import annotations

import logging
import unicodedata

# C0 and C1 controls, DEL, and Unicode's own line and paragraph separators.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def safe(value: object) -> str:
    """``value`` as text with every control character escaped (``\\n``, ``\\x1b``...)."""
    text = str(value)
    if text.isprintable():
        return text
    return text.translate(_ESCAPES)


def _needs_escape(text: str) -> bool:
    return not text.isprintable() and any(
        unicodedata.category(ch) in ("Cc", "Zl", "Zp") for ch in text
    )


class EscapingFilter(logging.Filter):
    """Escapes control characters in the message (format and arguments); the traceback, which a
    handler appends on its own lines, is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as usual
            return True
        if _needs_escape(message):
            record.msg, record.args = safe(message), None
        return True
