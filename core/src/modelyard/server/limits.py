"""What a request may be, checked at the edge before anything else works on it.

The body size is checked against ``Content-Length`` before reading and counted while reading, so a
huge body is refused (413) without being buffered. JSON nesting is bounded before decoding: every
decoder, converter and encoder on the way to the runner recurses, and a body nested thousands deep
would otherwise end in a ``RecursionError``. Content parts are checked against what the loaded model
accepts, so an image sent to a text-only model is a 400 naming the part, not an engine failure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.requests import Request

from ..errors import InvalidRequest, PayloadTooLarge, Unsupported
from ..schemas import AudioPart, ChatCompletionRequest, ImagePart

# Large enough for long chat histories and big embedding batches, small enough that a runaway
# client cannot make the server buffer gigabytes. ``serve --max-body-size`` changes it.
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
# Deeper than any real JSON schema or chat history; far below Python's recursion limit.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPEN = frozenset(b"[{")


def max_body_size(request: Request) -> int:
    return getattr(request.app.state, "max_body_size", None) or DEFAULT_MAX_BODY_BYTES


def format_bytes(size: int) -> str:
    """'32 MiB (33554432 bytes)': the unit people set, and the exact number."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit} ({size} bytes)"
    return f"{size} bytes"


def too_large(limit: int, size: int | None = None) -> PayloadTooLarge:
    what = f"the request body of {size} bytes" if size is not None else "the request body"
    return PayloadTooLarge(
        f"{what} exceeds this server's limit of {format_bytes(limit)}; send a smaller request "
        "(fewer or shorter inputs), or start the server with a larger --max-body-size"
    )


def declared_size(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    return int(raw) if raw is not None and raw.strip().isdigit() else None


def check_depth(body: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` arrays/objects (strings are skipped, so brackets
    inside them do not count). Cheap: one regex pass, then a walk over the brackets alone."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    brackets = _STRING.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = 0
    for byte in brackets:
        if byte in _OPEN:
            depth += 1
            if depth > limit:
                raise InvalidRequest(
                    f"the JSON body is nested more than {limit} arrays/objects deep; "
                    "flatten it (no API field needs that much nesting)"
                )
        else:
            depth -= 1


def check_parts(request: ChatCompletionRequest, uid: str, abilities: Sequence[str]) -> None:
    """Image and audio parts only go to models that accept them; the 400 names the first part
    that cannot be served and what the model does accept."""
    needs = {ImagePart: ("vision", "an `image_url`"), AudioPart: ("audio", "an `input_audio`")}
    for m, message in enumerate(request.messages):
        if isinstance(message.content, str) or not message.content:
            continue
        for i, part in enumerate(message.content):
            need = needs.get(type(part))
            if need is None or need[0] in abilities:
                continue
            ability, what = need
            accepts = ["text"] + [kind for kind in ("vision", "audio") if kind in abilities]
            where = f"messages[{m}].content[{i}]"
            raise Unsupported(
                f"{where} is {what} part, but model {uid!r} has no {ability} ability; it accepts "
                f"{' and '.join(accepts)} parts ({', '.join(abilities) or 'no abilities'}): "
                f"send text only, or launch a model with the {ability} ability",
                param=where,
            )
